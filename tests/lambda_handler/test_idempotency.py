"""Duplicate deliveries against SageMaker's real behaviour, with botocore's Stubber.

moto accepts a second CreateTransformJob with a name in use; SageMaker rejects it
(ValidationException "... a job with this name already exists", or ResourceInUse).
The Stubber replays exactly those answers, and checks every request the handler sends.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from lambda_events import BUCKET, MODEL, MODEL_PARAMETER, PREFIX, REGION, s3_event, s3_record

from lambda_handler import handler as handler_module
from lambda_handler import naming
from lambda_handler.handler import TriggerError, handler

KEY = "transform/input/daily report.csv"
VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
NAME = naming.job_name(PREFIX, BUCKET, KEY, naming.object_token(VERSION))
ARN = f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{NAME}"
DUPLICATE_MESSAGE = (
    "Job name must be unique within an AWS account and region, and a job with this name "
    f"already exists ({ARN})"
)


@pytest.fixture
def stubs(function_env: dict[str, str]) -> Iterator[dict[str, Stubber]]:
    """Stubbed SageMaker and SSM clients installed as the handler's cached clients."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    stubbers = {"sagemaker": Stubber(sagemaker), "ssm": Stubber(ssm)}
    handler_module.reset_clients()
    handler_module._CLIENTS.update(sagemaker=sagemaker, ssm=ssm)
    for stubber in stubbers.values():
        stubber.activate()
    yield stubbers
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()
    handler_module.reset_clients()


def _expect_model(stubs: dict[str, Stubber]) -> None:
    stubs["ssm"].add_response(
        "get_parameter",
        {"Parameter": {"Name": MODEL_PARAMETER, "Type": "String", "Value": MODEL, "Version": 1}},
        {"Name": MODEL_PARAMETER},
    )


def _create_params(name: str = NAME, key: str = KEY) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": MODEL,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{key}"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/transform/output",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "MaxConcurrentTransforms": 2,
    }


def _described(status: str, key: str = KEY) -> dict[str, Any]:
    return {
        "TransformJobName": NAME,
        "TransformJobArn": ARN,
        "TransformJobStatus": status,
        "ModelName": MODEL,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{key}"}
            }
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    }


def _expect_name_taken(stubs: dict[str, Stubber], existing: dict[str, Any]) -> None:
    """SageMaker refuses the name as a duplicate; the handler then describes that job."""
    stubs["sagemaker"].add_client_error(
        "create_transform_job",
        "ValidationException",
        DUPLICATE_MESSAGE,
        400,
        expected_params=_create_params(),
    )
    stubs["sagemaker"].add_response("describe_transform_job", existing, {"TransformJobName": NAME})


@pytest.mark.parametrize(
    ("code", "message"),
    [("ValidationException", DUPLICATE_MESSAGE), ("ResourceInUse", f"Job {NAME} already exists")],
)
def test_duplicate_delivery_starts_exactly_one_job(
    stubs: dict[str, Stubber], code: str, message: str
) -> None:
    event = s3_event(s3_record(KEY, version_id=VERSION))
    # First delivery: the job is created.
    _expect_model(stubs)
    stubs["sagemaker"].add_response(
        "create_transform_job", {"TransformJobArn": ARN}, _create_params()
    )
    # Second delivery of the same event: SageMaker refuses the name; the job is reported.
    _expect_model(stubs)
    stubs["sagemaker"].add_client_error(
        "create_transform_job", code, message, 400, expected_params=_create_params()
    )
    stubs["sagemaker"].add_response(
        "describe_transform_job", _described("InProgress"), {"TransformJobName": NAME}
    )

    first = handler(event, None)
    second = handler(event, None)

    assert [s["job_name"] for s in first["started"]] == [NAME]
    assert second["started"] == [] and second["failed"] == []
    assert [(e["job_name"], e["status"]) for e in second["existing"]] == [(NAME, "InProgress")]


def test_the_same_record_twice_in_one_event_starts_one_job(stubs: dict[str, Stubber]) -> None:
    record = s3_record(KEY, version_id=VERSION)
    _expect_model(stubs)  # read once per invocation
    stubs["sagemaker"].add_response(
        "create_transform_job", {"TransformJobArn": ARN}, _create_params()
    )
    _expect_name_taken(stubs, _described("InProgress"))
    result = handler(s3_event(record, record), None)
    assert len(result["started"]) == 1 and len(result["existing"]) == 1


def test_a_redelivery_after_the_job_finished_reports_it(stubs: dict[str, Stubber]) -> None:
    _expect_model(stubs)
    _expect_name_taken(stubs, _described("Completed"))
    result = handler(s3_event(s3_record(KEY, version_id=VERSION)), None)
    assert result["existing"][0]["status"] == "Completed"


def test_a_name_taken_by_another_input_is_a_failure_not_a_silent_success(
    stubs: dict[str, Stubber],
) -> None:
    _expect_model(stubs)
    _expect_name_taken(stubs, _described("Completed", key="transform/input/other.csv"))
    with pytest.raises(TriggerError, match=r"already used by a job for s3://.*/other\.csv"):
        handler(s3_event(s3_record(KEY, version_id=VERSION)), None)


def test_other_sagemaker_errors_fail_with_the_reason(stubs: dict[str, Stubber]) -> None:
    _expect_model(stubs)
    stubs["sagemaker"].add_client_error(
        "create_transform_job",
        "ValidationException",
        f'Could not find model "arn:aws:sagemaker:{REGION}:123456789012:model/{MODEL}".',
        400,
        expected_params=_create_params(),
    )
    with pytest.raises(TriggerError) as excinfo:
        handler(s3_event(s3_record(KEY, version_id=VERSION)), None)
    assert "Could not find model" in str(excinfo.value)
    assert f"s3://{BUCKET}/{KEY}" in str(excinfo.value)


def test_an_unreadable_parameter_reports_the_ssm_error(stubs: dict[str, Stubber]) -> None:
    stubs["ssm"].add_client_error(
        "get_parameter",
        "AccessDeniedException",
        "not authorized to perform ssm:GetParameter",
        400,
        expected_params={"Name": MODEL_PARAMETER},
    )
    with pytest.raises(TriggerError, match=r"cannot read SSM parameter .* AccessDeniedException"):
        handler(s3_event(s3_record(KEY, version_id=VERSION)), None)
