"""Constants and builders for real-shaped Lambda events, shared by the handler tests.

(A plain module, not conftest: tests import from it by name; tests/ has no packages.)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from lambda_handler.config import Settings

REGION = "us-east-1"
BUCKET = "sbt-dev-data-123456789012"
PREFIX = "sbt-dev-1a2b--"
INPUT_PREFIX = "transform/input/"
OUTPUT_PREFIX = "transform/output/"
MODEL_PARAMETER = "/sagemaker-batch-transform/dev/current-model"
MODEL = "sbt-dev-model-20260101-000000"

SETTINGS = Settings(
    job_name_prefix=PREFIX,
    input_prefix=INPUT_PREFIX,
    output_prefix=OUTPUT_PREFIX,
    model_parameter=MODEL_PARAMETER,
    instance_type="ml.m5.large",
    instance_count=1,
    max_payload_mb=6,
    max_concurrent_transforms=2,
)


def list_jobs(sagemaker: Any) -> list[dict[str, Any]]:
    """Every transform job moto knows, described."""
    names = [
        j["TransformJobName"] for j in sagemaker.list_transform_jobs()["TransformJobSummaries"]
    ]
    return [sagemaker.describe_transform_job(TransformJobName=n) for n in names]


class Context:
    """The parts of the Lambda context object the handler reads."""

    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"
    function_name = "sbt-dev-trigger"


def s3_record(
    key: str,
    *,
    bucket: str = BUCKET,
    version_id: str | None = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    etag: str = "0123456789abcdef0123456789abcdef",
    sequencer: str = "0055AED6DCD90281E5",
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """One record as S3 sends it: the key URL-encoded the way S3 does (spaces as '+')."""
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),
        "size": 1024,
        "eTag": etag,
        "sequencer": sequencer,
    }
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "transform-input",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON: the handler gets what Lambda deserialises, nothing richer.
    return json.loads(json.dumps({"Records": list(records)}))


def eventbridge_event(
    key: str, *, bucket: str = BUCKET, version_id: str | None = "Tl3Yv1QmrZ.wVG1xk0bT4Gmw5Gq1cBsk"
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "key": key,
        "size": 5,
        "etag": "b1946ac92492d2347c6235b4d2611184",
        "sequencer": "617f08299329d189",
    }
    if version_id is not None:
        obj["version-id"] = version_id
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.10",
            "reason": "PutObject",
        },
    }


S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-01-01T00:00:00.000Z",
    "Bucket": BUCKET,
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sqs_wrapped(message: dict[str, Any], *, index: int = 0) -> dict[str, Any]:
    """One SQS record as Lambda delivers it, carrying ``message`` as its JSON body."""
    return {
        "messageId": f"059f36b4-87a3-44ab-83d2-66197525889{index}",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": json.dumps(message),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1767225600000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1767225600001",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:transform-input",
        "awsRegion": REGION,
    }


def sns_envelope(message: dict[str, Any]) -> dict[str, Any]:
    """The SNS notification JSON (what SNS -> SQS without raw delivery puts in the body)."""
    return {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": f"arn:aws:sns:{REGION}:123456789012:transform-input",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def sns_wrapped(message: dict[str, Any]) -> dict[str, Any]:
    """One SNS record as Lambda delivers it, carrying ``message`` as ``Sns.Message``."""
    envelope = sns_envelope(message)
    sns = {
        key.replace("SigningCertURL", "SigningCertUrl").replace(
            "UnsubscribeURL", "UnsubscribeUrl"
        ): v
        for key, v in envelope.items()
    }
    sns["MessageAttributes"] = {}
    return {
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"arn:aws:sns:{REGION}:123456789012:transform-input:2bcfbf39",
        "EventSource": "aws:sns",
        "Sns": sns,
    }
