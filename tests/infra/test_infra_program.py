"""The program as a whole: thin entry point, settings first, stack files, preview mode."""

from __future__ import annotations

import ast
import re

import pytest
from infra_harness import LAST_MONITOR, PROJECT, REPO_ROOT, Run, run_program, stack_config

from infra.policies import UNKNOWN
from infra.settings import SettingsError
from infra.trigger import TriggerConfigError


def test_main_only_calls_build() -> None:
    tree = ast.parse((REPO_ROOT / "__main__.py").read_text())
    statements = [node for node in tree.body if not isinstance(node, ast.Expr | ast.ImportFrom)]
    assert statements == []
    calls = [
        n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
    ]
    assert [ast.unparse(call) for call in calls] == ["build()"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("githubRepoUrl", "", "config 'githubRepoUrl' is not set"),
        ("vpcCidr", "10.0.0.0/99", "config 'vpcCidr' must be an IPv4 CIDR block"),
        ("notebookInstanceType", "t3.large", "config 'notebookInstanceType' must be"),
        ("notebookVolumeSizeGb", "1", "config 'notebookVolumeSizeGb' must be a whole number"),
    ],
)
def test_bad_config_stops_the_program_before_any_resource(
    key: str, value: str, message: str
) -> None:
    config = {**stack_config("dev"), f"{PROJECT}:{key}": value}
    with pytest.raises(SettingsError, match=message):
        run_program(config)
    assert LAST_MONITOR[0].records == []  # not even the provider was declared


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("triggerMemoryMb", "64", "config triggerMemoryMb must be 128-10240 MB"),
        ("triggerOutputPrefix", "transform/input/results/", "overlap"),
        ("transformInstanceType", "m5.large", "must be an ml.* type"),
    ],
)
def test_bad_trigger_config_stops_the_program_before_any_resource(
    key: str, value: str, message: str
) -> None:
    config = {**stack_config("dev"), f"{PROJECT}:{key}": value}
    with pytest.raises(TriggerConfigError, match=re.escape(message)):
        run_program(config)
    assert LAST_MONITOR[0].records == []


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_both_stack_files_run(name: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(name)
    assert run.stack.settings.stack == name
    assert len([r for r in run.resources if r["custom"]]) >= 40  # the trigger's ~15 included
    assert run.stack.trigger is not None
    assert run.exports["region"] == "eu-west-1"


def test_preview_with_unknown_values_declares_the_same_resources(preview: Run, dev: Run) -> None:
    assert sorted((r["type"], r["name"]) for r in preview.resources) == sorted(
        (r["type"], r["name"]) for r in dev.resources
    )
    assert set(preview.exports) == set(dev.exports)
    assert preview.exports["region"] == "eu-west-1"
    # Everything computed by AWS is unknown in a first preview.
    assert preview.exports["bucket_name"] == UNKNOWN
    assert preview.exports["image_uri"] == UNKNOWN
    assert preview.exports["failed_events_queue_url"] == UNKNOWN
    # Config-only values are known even in a first preview.
    assert preview.exports["input_prefix"] == "transform/input/"
    assert preview.exports["transform_job_name_prefix"] == dev.exports["transform_job_name_prefix"]
    role_policies = preview.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(role_policies) == 3  # the job role's, the notebook role's and the trigger's
    assert all(r["inputs"]["policy"] == UNKNOWN for r in role_policies)
