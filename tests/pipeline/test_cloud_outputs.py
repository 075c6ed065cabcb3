"""Reading the stack's outputs: Automation API (with a stand-in CLI), the JSON file, checks.

There is no Pulumi CLI on these machines. The Automation API code runs for real:
once with no ``pulumi`` on PATH at all, and otherwise against a small shell script
named ``pulumi`` that answers ``version`` and ``stack output`` the way the CLI does.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from cloud_fixtures import OUTPUTS

from model.cloud.outputs import (
    OutputsError,
    StackOutputs,
    read_outputs_file,
    read_stack_outputs,
)

FAKE_PULUMI = """#!/bin/sh
# Stand-in for the Pulumi CLI: `version` and `stack output --json [--show-secrets]`.
case "$*" in
  *version*) echo "v3.272.0"; exit 0 ;;
esac
case "$FAKE_PULUMI_MODE" in
  outputs)
    case "$*" in
      *--show-secrets*) cat "$FAKE_PULUMI_OUTPUTS" ;;
      *) cat "$FAKE_PULUMI_MASKED" ;;
    esac ;;
  missing) echo "error: no stack named 'dev' found" >&2; exit 255 ;;
  empty) echo "{}" ;;
  login)
    echo "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions" >&2
    exit 255 ;;
esac
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A Pulumi project directory (only Pulumi.yaml matters here)."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "Pulumi.yaml").write_text("name: sagemaker-batch-transform\nruntime: python\n")
    return directory


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Put the stand-in ``pulumi`` first on PATH; returns a function choosing its answer."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # no pulumi elsewhere here
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)

    def answer(mode: str, outputs: dict[str, Any] | None = None, secret: tuple[str, ...] = ()):
        monkeypatch.setenv("FAKE_PULUMI_MODE", mode)
        if outputs is not None:
            plain, masked = tmp_path / "plain.json", tmp_path / "masked.json"
            plain.write_text(json.dumps(outputs))
            masked.write_text(
                json.dumps({k: "[secret]" if k in secret else v for k, v in outputs.items()})
            )
            monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", str(plain))
            monkeypatch.setenv("FAKE_PULUMI_MASKED", str(masked))

    return answer


def test_no_cli_says_how_to_install_or_use_a_file(project, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(OutputsError) as caught:
        read_stack_outputs("dev", project)
    message = str(caught.value)
    assert "the Pulumi CLI is needed to read stack 'dev'" in message
    assert "curl -fsSL https://get.pulumi.com | sh" in message
    assert "pulumi stack output --json --stack dev > outputs.json" in message
    assert "--outputs-file outputs.json" in message


def test_outputs_through_the_automation_api(project, fake_cli) -> None:
    fake_cli("outputs", OUTPUTS, secret=("github_secret_arn",))
    values = read_stack_outputs("dev", project)
    assert values == OUTPUTS
    assert StackOutputs.parse("dev", values).bucket_name == OUTPUTS["bucket_name"]


def test_stack_that_does_not_exist(project, fake_cli) -> None:
    fake_cli("missing")
    with pytest.raises(OutputsError) as caught:
        read_stack_outputs("dev", project)
    assert "stack 'dev' does not exist" in str(caught.value)
    assert "pulumi stack init dev && pulumi up --stack dev" in str(caught.value)


def test_stack_without_outputs(project, fake_cli) -> None:
    fake_cli("empty")
    with pytest.raises(OutputsError, match=r"stack 'dev' has no outputs: deploy it first with "):
        read_stack_outputs("dev", project)


def test_other_cli_failures_show_the_cli_message(project, fake_cli) -> None:
    fake_cli("login")
    with pytest.raises(OutputsError) as caught:
        read_stack_outputs("dev", project)
    assert "error: PULUMI_ACCESS_TOKEN must be set" in str(caught.value)
    assert "pulumi login" in str(caught.value)


def test_project_dir_without_pulumi_yaml(tmp_path) -> None:
    with pytest.raises(OutputsError, match=r"holds no Pulumi\.yaml: pass --project-dir"):
        read_stack_outputs("dev", tmp_path)


def test_outputs_file(tmp_path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    assert read_outputs_file(path) == OUTPUTS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist: write it with `pulumi stack output --json"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object of outputs"),
        ("{}", "holds no outputs: the stack is not deployed yet (run `pulumi up`)"),
    ],
)
def test_bad_outputs_file(tmp_path, content, message) -> None:
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(OutputsError) as caught:
        read_outputs_file(path)
    assert message in str(caught.value)


def test_missing_keys_are_named() -> None:
    values = {k: v for k, v in OUTPUTS.items() if k not in ("sagemaker_role_arn", "region")}
    with pytest.raises(OutputsError) as caught:
        StackOutputs.parse("prod", values)
    assert str(caught.value).startswith(
        "stack 'prod' outputs lack region, sagemaker_role_arn: the stack may predate them; "
        "run `pulumi up --stack prod`"
    )


def test_empty_value_counts_as_missing() -> None:
    with pytest.raises(OutputsError, match="lack current_model_parameter"):
        StackOutputs.parse("dev", dict(OUTPUTS, current_model_parameter=""))


def test_masked_secret_is_explained() -> None:
    with pytest.raises(OutputsError, match="--show-secrets"):
        StackOutputs.parse("dev", dict(OUTPUTS, image_uri="[secret]"))


def test_region_must_look_like_one() -> None:
    with pytest.raises(OutputsError, match="'Ireland' is not an AWS region name"):
        StackOutputs.parse("dev", dict(OUTPUTS, region="Ireland"))


def test_parsed_outputs() -> None:
    parsed = StackOutputs.parse("dev", OUTPUTS)
    assert parsed.account_id == "123456789012"
    assert parsed.image_is_pinned
    assert not StackOutputs.parse("dev", dict(OUTPUTS, image_uri="repo:latest")).image_is_pinned
    assert parsed.transform_job_name_prefix is None and parsed.kms_key_arn is None
    assert parsed.input_prefix == "transform/input/"


def test_environment_without_the_pulumi_sdk(project, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pulumi", None)  # `import pulumi` raises ImportError
    with pytest.raises(OutputsError) as caught:
        read_stack_outputs("dev", project)
    assert "the Pulumi SDK is not installed in this environment (dependency group 'infra')" in str(
        caught.value
    )
    assert "--outputs-file" in str(caught.value)
