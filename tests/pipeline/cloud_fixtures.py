"""Fixtures of the cloud-run tests (imported by the test_cloud_* modules).

Never a real endpoint: every test gets dummy credentials, no profile, no shared
config files and the instance-metadata lookup disabled, then moto in-process (or a
ThreadedMotoServer on 127.0.0.1 for the subprocess test). The stack is the set of
resources the Pulumi program would have made, created in moto, and its outputs are
handed to the run as a dict.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloud_moto import FakeTransform, ModelFixes
from moto import mock_aws

REGION = "eu-west-1"
ACCOUNT = "123456789012"
BUCKET = "sbt-dev-artifacts-1234"
PARAMETER = "/sagemaker-batch-transform/dev/current-model"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sbt-dev-serving@{DIGEST}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sbt-dev-sagemaker"
UNSET = "none (no model registered yet)"  # lambda_handler.model_parameter.UNSET

OUTPUTS: dict[str, Any] = {
    "region": REGION,
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0a", "subnet-0b"],
    "security_group_id": "sg-0123",
    "bucket_name": BUCKET,
    "ecr_repository_url": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sbt-dev-serving",
    "image_uri": IMAGE,
    "sagemaker_role_arn": ROLE,
    "notebook_instance_name": "sbt-dev-notebook",
    "notebook_url": "https://sbt-dev-notebook.notebook.eu-west-1.sagemaker.aws",
    "code_server_url": "https://sbt-dev-notebook.notebook.eu-west-1.sagemaker.aws/codeserver/",
    "trigger_function_name": "sbt-dev-trigger",
    "input_prefix": "transform/input/",
    "output_prefix": "transform/output/",
    "current_model_parameter": PARAMETER,
    "failed_events_queue_url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/sbt-dev-trigger-failed",
    "notifications_topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:sbt-dev-transform-jobs",
}

# Small and quick: 2,000 rows -> 400 transform rows in 3 files.
SMALL = ["--rows", "2000", "--files", "3", "--poll-seconds", "1"]


@pytest.fixture(autouse=True)
def dummy_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials and region; nothing from the user's AWS configuration."""
    empty = tmp_path_factory.mktemp("aws-config") / "empty"
    empty.write_text("")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_sdk_caches()


def reset_sdk_caches() -> None:
    """Forget the SageMaker SDK's cached clients (they may belong to another moto backend)."""
    with warnings.catch_warnings():
        # The SDK's docstrings hold invalid escape sequences (\*, \|): noise, not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        from sagemaker.core.utils.logs import CloudWatchLogsClient
        from sagemaker.core.utils.utils import SageMakerClient, SingletonMeta

    SageMakerClient.reset()
    SingletonMeta._instances.pop(CloudWatchLogsClient, None)


def create_stack(outputs: dict[str, Any] = OUTPUTS, *, bucket_region: str = REGION) -> None:
    """What `pulumi up` made and the run touches: a versioned bucket and the SSM parameter."""
    s3 = boto3.client("s3", region_name=bucket_region)
    if bucket_region == "us-east-1":
        s3.create_bucket(Bucket=outputs["bucket_name"])
    else:
        s3.create_bucket(
            Bucket=outputs["bucket_name"],
            CreateBucketConfiguration={"LocationConstraint": bucket_region},
        )
    s3.put_bucket_versioning(
        Bucket=outputs["bucket_name"], VersioningConfiguration={"Status": "Enabled"}
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=outputs["current_model_parameter"], Value=UNSET, Type="String"
    )


@pytest.fixture
def moto_stack() -> Iterator[dict[str, Any]]:
    """moto in-process with the stack's bucket and parameter; yields the outputs."""
    with mock_aws():
        create_stack()
        yield dict(OUTPUTS)
    reset_sdk_caches()


@pytest.fixture
def model_fixes(monkeypatch: pytest.MonkeyPatch) -> ModelFixes:
    """DescribeModel as SageMaker answers it; CreateModel requests recorded."""
    return ModelFixes().install(monkeypatch)


@pytest.fixture
def fake_transform(monkeypatch: pytest.MonkeyPatch, model_fixes: ModelFixes) -> FakeTransform:
    """Transform jobs that write their .out files (and the model fixes they need)."""
    return FakeTransform().install(monkeypatch)


def cloud_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    """Parsed ``python -m model.cloud`` arguments for a small run in ``tmp_path/run``."""
    from model.cloud.run import build_parser

    return build_parser().parse_args(
        [*SMALL, "--workdir", str(tmp_path / "run"), "--stack", "dev", *extra]
    )


def reader(outputs: dict[str, Any]) -> Any:
    """The injectable outputs reader, answering with ``outputs``."""
    calls: list[tuple[str, Path]] = []

    def read(stack: str, project_dir: Path) -> dict[str, Any]:
        calls.append((stack, project_dir))
        return dict(outputs)

    read.calls = calls  # type: ignore[attr-defined]
    return read


def s3_keys(prefix: str = "") -> list[str]:
    """Every key in the stack's bucket under ``prefix``."""
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
