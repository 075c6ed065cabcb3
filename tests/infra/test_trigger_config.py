"""The trigger's stack config: defaults, one clear line per bad key, and the schema in
Pulumi.yaml agreeing with the code's defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest
import yaml

from infra.trigger import (
    CONFIG_KEYS,
    NAME_LIMITS,
    TriggerArgs,
    TriggerConfigError,
    TriggerSettings,
    load_trigger_settings,
    physical_names,
)

PROJECT = "sagemaker-batch-transform"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config() -> Iterator[dict[str, str]]:
    """Set stack config values as the CLI would (strings), then read them back."""
    values: dict[str, str] = {}
    yield values
    pulumi.runtime.set_all_config({})


def _load(values: dict[str, str]) -> TriggerSettings:
    pulumi.runtime.set_all_config({f"{PROJECT}:{k}": v for k, v in values.items()})
    return load_trigger_settings(pulumi.Config(PROJECT))


def test_unset_keys_take_the_defaults(config: dict[str, str]) -> None:
    assert _load(config) == TriggerSettings()


def test_values_are_read_and_typed(config: dict[str, str]) -> None:
    config.update(
        triggerInputPrefix="uploads/",
        triggerOutputPrefix="predictions/",
        triggerInputSuffix="",
        transformInstanceType="ml.c5.xlarge",
        transformInstanceCount="2",
        transformMaxConcurrentTransforms="4",
        triggerReservedConcurrency="5",
        notificationEmail="ml@example.com",
    )
    settings = _load(config)
    assert settings.input_prefix == "uploads/" and settings.input_suffix == ""
    assert settings.instance_count == 2 and settings.max_concurrent_transforms == 4
    assert settings.reserved_concurrency == 5
    assert settings.notification_email == "ml@example.com"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("triggerMemoryMb", "64", "config triggerMemoryMb must be 128-10240 MB"),
        ("triggerTimeoutSeconds", "1000", "triggerTimeoutSeconds must be 1-900"),
        ("triggerLogRetentionDays", "10", "triggerLogRetentionDays must be one of 1, 3, 5"),
        ("triggerReservedConcurrency", "0", "-1 (no reservation) or at least 1"),
        ("triggerMaxRetryAttempts", "3", "must be 0-2"),
        ("triggerMaxEventAgeSeconds", "30", "must be 60-21600"),
        ("notificationEmail", "not-an-address", "must be an email address"),
        ("triggerInputPrefix", "in put/", "may use only letters"),
        ("triggerOutputPrefix", "transform/input/out/", "overlap"),
        ("transformInstanceType", "m5.large", "transformInstanceType='m5.large' must be an ml.*"),
        ("transformSplitType", "Lines", "transformSplitType must be one of None, Line"),
        ("transformMaxPayloadMb", "200", "transformMaxPayloadMb must be 0-100"),
        ("transformMaxConcurrentTransforms", "50", "x transformMaxPayloadMb must be <= 100"),
        ("transformInstanceCount", "two", "config transformInstanceCount must be a whole number"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(
    config: dict[str, str], key: str, value: str, message: str
) -> None:
    config[key] = value
    with pytest.raises(TriggerConfigError) as excinfo:
        _load(config)
    text = str(excinfo.value)
    assert message in text
    assert f"fix: pulumi config set {key} " in text
    assert "TRIGGER_" not in text and "TRANSFORM_" not in text  # config names, not env vars


def test_every_problem_is_listed_once_per_line(config: dict[str, str]) -> None:
    config.update(triggerMemoryMb="1", triggerTimeoutSeconds="0", transformAssembleWith="Nope")
    with pytest.raises(TriggerConfigError) as excinfo:
        _load(config)
    lines = str(excinfo.value).splitlines()
    assert len(lines) == len(set(lines)) == 3
    assert all(line.startswith("config ") for line in lines)


def test_args_refuse_bad_settings_before_any_resource() -> None:
    with pytest.raises(TriggerConfigError, match="memory_mb must be 128-10240"):
        TriggerArgs(
            prefix="p",
            bucket_name="b",
            bucket_arn="arn:aws:s3:::b",
            job_role_arn="arn:aws:iam::123456789012:role/r",
            settings=TriggerSettings(memory_mb=1),
        )
    with pytest.raises(TriggerConfigError, match="job name prefix"):
        TriggerArgs(
            prefix="p",
            bucket_name="b",
            bucket_arn="arn:aws:s3:::b",
            job_role_arn="arn:aws:iam::123456789012:role/r",
            job_name_prefix="Not_Valid",
        )


def test_pulumi_yaml_schema_matches_the_defaults() -> None:
    """Once the keys are in Pulumi.yaml, their types and defaults must be the code's."""
    schema = yaml.safe_load((REPO / "Pulumi.yaml").read_text()).get("config", {})
    present = [key for key in CONFIG_KEYS.values() if key in schema]
    if not present:
        pytest.skip("the trigger's config keys are not in Pulumi.yaml yet")
    assert sorted(present) == sorted(CONFIG_KEYS.values()), "some trigger keys are missing"
    defaults = TriggerSettings()
    for name, key in CONFIG_KEYS.items():
        spec, default = schema[key], getattr(defaults, name)
        assert spec.get("description"), key
        assert spec["type"] == ("integer" if isinstance(default, int) else "string"), key
        assert spec.get("default") == default, key


def test_the_longest_stack_prefix_keeps_every_name_within_aws_limits() -> None:
    longest = "p" * 40  # infra.settings.MAX_PREFIX_LENGTH
    for kind, name in physical_names(longest).items():
        assert len(name) <= NAME_LIMITS[kind], kind
    with pytest.raises(TriggerConfigError, match="too long"):
        TriggerArgs(
            prefix="p" * 60,
            bucket_name="b",
            bucket_arn="arn:aws:s3:::b",
            job_role_arn="arn:aws:iam::123456789012:role/r",
        )


def test_job_defaults_match_the_handlers_own() -> None:
    """The stack's defaults and the handler's must not drift apart (they live in two places:
    the handler ships alone, without infra/)."""
    import dataclasses

    from infra.trigger import TriggerSettings
    from lambda_handler.config import Settings

    handler = Settings._field_defaults  # a NamedTuple: cheap to import in the Lambda
    stack = {f.name: f.default for f in dataclasses.fields(TriggerSettings)}
    shared = set(handler) & set(stack)
    assert {"instance_type", "batch_strategy", "max_payload_mb", "input_suffix"} <= shared
    assert {name: stack[name] for name in shared} == {name: handler[name] for name in shared}
