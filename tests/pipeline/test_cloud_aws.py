"""Credential, account and region checks: each failure is one clear message, before training."""

# Fixtures come from cloud_fixtures (tests/pipeline/conftest.py is another helper's).

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cloud_fixtures import (
    OUTPUTS,
    REGION,
    cloud_args,
    create_stack,
    dummy_aws,  # noqa: F401 - a fixture, used by name
    reader,
)
from moto import mock_aws

from model.cloud.aws import AwsContext, AwsError, check_access, check_credentials
from model.cloud.outputs import StackOutputs
from model.cloud.run import run_cloud

STACK = StackOutputs.parse("dev", OUTPUTS)


def test_no_credentials(monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsError) as caught:
        check_credentials(AwsContext(REGION))
    assert str(caught.value).startswith("no AWS credentials found: configure them with")
    assert "aws sso login" in str(caught.value)


def test_unknown_profile(monkeypatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(AwsError, match=r"AWS credentials cannot be loaded .*nope"):
        check_credentials(AwsContext(REGION))


def test_rejected_credentials() -> None:
    context = AwsContext(REGION)
    with Stubber(context.client("sts")) as stub:
        stub.add_client_error(
            "get_caller_identity",
            service_error_code="ExpiredToken",
            service_message="The security token included in the request is expired",
            http_status_code=403,
        )
        with pytest.raises(AwsError) as caught:
            check_credentials(context)
    assert "AWS rejected the credentials (ExpiredToken: The security token" in str(caught.value)


def test_credentials_of_another_account() -> None:
    other = dict(OUTPUTS, sagemaker_role_arn="arn:aws:iam::999999999999:role/sbt-prod-sagemaker")
    with mock_aws():
        create_stack()
        with pytest.raises(AwsError) as caught:
            check_access(AwsContext(REGION), StackOutputs.parse("prod", other))
    message = str(caught.value)
    assert "credentials are for account 123456789012" in message
    assert "stack 'prod' is deployed in account 999999999999" in message


def test_bucket_in_another_region_is_the_wrong_region() -> None:
    with mock_aws():
        create_stack(bucket_region="us-east-1")
        with pytest.raises(AwsError) as caught:
            check_access(AwsContext(REGION), STACK)
    assert str(caught.value).startswith(
        f"wrong region: bucket {OUTPUTS['bucket_name']} is in us-east-1 but stack 'dev' says "
        "eu-west-1"
    )


def test_missing_bucket_means_stale_outputs() -> None:
    with mock_aws(), pytest.raises(AwsError) as caught:
        check_access(AwsContext(REGION), STACK)
    assert "does not exist: the outputs are stale or the stack was destroyed" in str(caught.value)


def test_configured_region_differs_the_stacks_wins(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    with mock_aws():
        create_stack()
        context = AwsContext(REGION)
        identity, notes = check_access(context, STACK)
        assert context.client("s3").meta.region_name == REGION
    assert identity.account == "123456789012"
    assert notes == ["using the stack's region eu-west-1 (your AWS configuration says us-west-2)"]


def test_run_stops_before_training_without_credentials(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code = run_cloud(cloud_args(tmp_path), reader(OUTPUTS), ask=None)
    err = capsys.readouterr().err
    assert code == 1
    assert "error: no AWS credentials found" in err
    assert "[2/6]" not in err and not (tmp_path / "run").exists()


def test_clients_are_created_lazily_in_the_stacks_region() -> None:
    session = boto3.Session(region_name="us-east-1")
    context = AwsContext(REGION, session=session)
    assert context._clients == {}
    client: Any = context.client("s3")
    assert client.meta.region_name == REGION
    assert context.client("s3") is client


def test_sagemaker_client_is_the_sdks() -> None:
    context = AwsContext(REGION)
    assert context.client("sagemaker") is context.sdk_client()
