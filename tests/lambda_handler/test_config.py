"""Job parameters from the environment: round trip with the stack, and clear refusals."""

from __future__ import annotations

import pytest
from lambda_events import SETTINGS

from lambda_handler.config import ENV_NAMES, ConfigError, Settings


def test_the_environment_written_by_the_stack_reads_back_identically() -> None:
    full = SETTINGS._replace(
        output_kms_key="arn:aws:kms:us-east-1:123456789012:key/abc",
        invocations_timeout_seconds=600,
        invocations_max_retries=3,
    )
    assert Settings.from_env(full.to_env()) == full
    assert Settings.from_env(SETTINGS.to_env()) == SETTINGS


def test_every_field_has_one_environment_variable() -> None:
    fields = set(Settings._fields)
    assert set(ENV_NAMES) == fields
    assert len(set(ENV_NAMES.values())) == len(fields)


def test_defaults_fit_csv_batch_transform() -> None:
    settings = Settings.from_env(
        {
            "TRIGGER_JOB_NAME_PREFIX": "sbt-dev-1a2b--",
            "TRIGGER_INPUT_PREFIX": "in/",
            "TRIGGER_OUTPUT_PREFIX": "out/",
        }
    )
    assert (settings.split_type, settings.assemble_with, settings.batch_strategy) == (
        "Line",
        "Line",
        "MultiRecord",
    )
    assert settings.input_suffix == ".csv" and settings.max_payload_mb == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_name_prefix": "Bad_Prefix"}, "TRIGGER_JOB_NAME_PREFIX"),
        ({"job_name_prefix": ""}, "TRIGGER_JOB_NAME_PREFIX must be 1-30"),
        ({"input_prefix": "transform/input"}, "ending in '/'"),
        ({"output_prefix": "/out/"}, "no leading '/'"),
        ({"output_prefix": "transform/input/results/"}, "overlap"),
        ({"input_prefix": "transform/", "output_prefix": "transform/output/"}, "overlap"),
        ({"instance_type": "m5.large"}, "must be an ml.* type"),
        ({"instance_count": 0}, "at least 1"),
        ({"split_type": "Lines"}, "TRANSFORM_SPLIT_TYPE must be one of"),
        ({"split_type": "None"}, "MultiRecord needs a split type"),
        ({"batch_strategy": "Multi"}, "TRANSFORM_BATCH_STRATEGY must be one of"),
        ({"assemble_with": "Newline"}, "TRANSFORM_ASSEMBLE_WITH must be one of"),
        ({"assemble_with": "None"}, "run together"),
        ({"max_payload_mb": 101}, "0-100"),
        ({"max_concurrent_transforms": 20}, "must be <= 100 (is 20 x 6)"),
        ({"max_concurrent_transforms": -1}, "0 (unset) or more"),
        ({"invocations_timeout_seconds": 0}, "1-3600"),
        ({"invocations_max_retries": 4}, "0-3"),
        ({"accept": ""}, "must not be empty"),
    ],
)
def test_bad_values_are_refused_with_the_variable_name(
    change: dict[str, object], message: str
) -> None:
    bad = SETTINGS._replace(**change)
    with pytest.raises(ConfigError) as excinfo:
        bad.validate()
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ConfigError):
        Settings.from_env(bad.to_env())


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({"TRANSFORM_MAX_PAYLOAD_MB": "six"})
    message = str(excinfo.value)
    for fragment in (
        "TRIGGER_JOB_NAME_PREFIX is not set",
        "TRIGGER_INPUT_PREFIX is not set",
        "TRIGGER_OUTPUT_PREFIX is not set",
        "TRANSFORM_MAX_PAYLOAD_MB='six' is not a whole number",
    ):
        assert fragment in message


def test_optional_numbers_may_be_blank() -> None:
    env = SETTINGS.to_env() | {"TRANSFORM_INVOCATIONS_TIMEOUT_SECONDS": ""}
    assert Settings.from_env(env).invocations_timeout_seconds is None
