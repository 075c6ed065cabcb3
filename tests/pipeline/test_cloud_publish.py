"""Names, the SageMaker Model (through the SDK, against moto) and the SSM update."""

# Fixtures are imported from cloud_fixtures (tests/pipeline/conftest.py is another
# helper's); pytest then finds them by name, which pyflakes reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from cloud_fixtures import (
    IMAGE,
    OUTPUTS,
    PARAMETER,
    REGION,
    ROLE,
    UNSET,
    dummy_aws,  # noqa: F401 - a fixture, used by name
    model_fixes,  # noqa: F401 - a fixture, used by name
    moto_stack,  # noqa: F401 - a fixture, used by name
)

from lambda_handler import naming
from model.cloud.aws import AwsContext
from model.cloud.ledger import Ledger
from model.cloud.outputs import StackOutputs
from model.cloud.publish import (
    PublishError,
    create_model,
    new_run_names,
    point_current_model,
    project_name,
)
from model.cloud.run import REPO_ROOT

STACK = StackOutputs.parse("dev", OUTPUTS)
NOW = datetime(2026, 7, 12, 10, 15, 0, tzinfo=UTC)


def test_run_names_are_valid_and_share_the_stacks_prefix() -> None:
    names = new_run_names(STACK, "sagemaker-batch-transform", now=NOW, token=lambda: "3f2a1c")
    prefix = naming.stack_prefix("sagemaker-batch-transform", "dev")
    assert names.run_id == "20260712-101500-3f2a1c"
    assert names.model_name == f"{prefix}model-20260712-101500-3f2a1c"
    assert names.job_name == f"{prefix}run-20260712-101500-3f2a1c"
    assert names.prefix == "runs/dev/20260712-101500-3f2a1c/"
    assert names.model_key == "runs/dev/20260712-101500-3f2a1c/model/model.tar.gz"
    for name in (names.model_name, names.job_name):
        assert naming.is_valid_job_name(name)


def test_run_names_differ_per_run() -> None:
    first = new_run_names(STACK, "p", now=NOW)
    second = new_run_names(STACK, "p", now=NOW)
    assert first.model_name != second.model_name and first.prefix != second.prefix


def test_exported_job_name_prefix_wins_and_org_stacks_use_the_short_name() -> None:
    exported = StackOutputs.parse(
        "acme/prod", dict(OUTPUTS, transform_job_name_prefix="custom-prod--")
    )
    names = new_run_names(exported, "ignored", now=NOW, token=lambda: "000000")
    assert names.job_name == "custom-prod--run-20260712-101500-000000"
    assert names.prefix == "runs/prod/20260712-101500-000000/"
    derived = new_run_names(StackOutputs.parse("acme/prod", OUTPUTS), "p", now=NOW)
    assert derived.job_name.startswith(naming.stack_prefix("p", "prod"))


def test_a_prefix_too_long_for_sagemaker_names_is_refused() -> None:
    long = StackOutputs.parse("dev", dict(OUTPUTS, transform_job_name_prefix="x" * 40))
    with pytest.raises(PublishError, match="is not a valid SageMaker name"):
        new_run_names(long, "p", now=NOW)


def test_run_prefix_must_stay_outside_the_trigger_prefix() -> None:
    clash = StackOutputs.parse("dev", dict(OUTPUTS, input_prefix="runs/"))
    with pytest.raises(PublishError, match="its uploads would start Lambda jobs"):
        new_run_names(clash, "p", now=NOW)


def test_project_name(tmp_path) -> None:
    assert project_name(REPO_ROOT) == "sagemaker-batch-transform"
    assert project_name(tmp_path) == "sagemaker-batch-transform"  # the default
    (tmp_path / "Pulumi.yaml").write_text("# comment\nname: 'other-project'\nruntime: python\n")
    assert project_name(tmp_path) == "other-project"


def test_create_model_through_the_sdk(moto_stack, model_fixes) -> None:
    context, ledger = AwsContext(REGION), Ledger()
    names = new_run_names(STACK, "sagemaker-batch-transform", now=NOW)
    url = f"s3://{OUTPUTS['bucket_name']}/{names.model_key}"
    arn = create_model(context, STACK, names, url, ledger)
    assert arn.endswith(f":model/{names.model_name}")
    request = model_fixes.requests[names.model_name]
    assert request["EnableNetworkIsolation"] is True
    assert request["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": url}
    assert request["ExecutionRoleArn"] == ROLE
    described = boto3.client("sagemaker", region_name=REGION).describe_model(
        ModelName=names.model_name
    )
    assert described["EnableNetworkIsolation"] is True
    assert ledger.entries[0].cleanup == (
        f"aws sagemaker delete-model --model-name {names.model_name} --region {REGION}"
    )


def test_create_model_failure_names_the_likely_cause(moto_stack) -> None:
    context, ledger = AwsContext(REGION), Ledger()
    names = new_run_names(STACK, "p", now=NOW)
    with Stubber(context.sdk_client()) as stub:
        stub.add_client_error(
            "create_model",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: iam:PassRole",
        )
        with pytest.raises(PublishError) as caught:
            create_model(context, STACK, names, "s3://b/k", ledger)
    assert f"creating SageMaker model {names.model_name} failed (AccessDeniedException" in str(
        caught.value
    )
    assert f"iam:PassRole on {ROLE}" in str(caught.value)
    assert not ledger.entries


def test_point_current_model_keeps_the_previous_value(moto_stack) -> None:
    context, ledger = AwsContext(REGION), Ledger()
    assert point_current_model(context, PARAMETER, "model-a", ledger) == UNSET
    assert point_current_model(context, PARAMETER, "model-b", ledger) == "model-a"
    ssm = boto3.client("ssm", region_name=REGION)
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == "model-b"
    assert "--value 'model-a'" in ledger.entries[-1].cleanup


def test_point_current_model_creates_a_missing_parameter(moto_stack) -> None:
    context, ledger = AwsContext(REGION), Ledger()
    assert point_current_model(context, "/other/param", "model-a", ledger) is None
    assert ledger.entries[0].cleanup.startswith("aws ssm delete-parameter --name /other/param")


def test_point_current_model_failure_says_how_to_do_it_by_hand(moto_stack) -> None:
    context, ledger = AwsContext(REGION), Ledger()
    with Stubber(context.client("ssm")) as stub:
        stub.add_response("get_parameter", {"Parameter": {"Value": UNSET}}, {"Name": PARAMETER})
        stub.add_client_error("put_parameter", "AccessDeniedException", "not authorized")
        with pytest.raises(PublishError) as caught:
            point_current_model(context, PARAMETER, "model-a", ledger)
    assert (
        f"aws ssm put-parameter --overwrite --name {PARAMETER} --value model-a --region {REGION}"
    ) in str(caught.value)
