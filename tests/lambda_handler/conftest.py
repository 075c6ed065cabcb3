"""Fixtures for the Lambda handler tests: moto-backed AWS and the function's environment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_events import MODEL, MODEL_PARAMETER, REGION, SETTINGS
from moto import mock_aws

from lambda_handler import handler as handler_module


@pytest.fixture(autouse=True)
def _dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real endpoint: dummy credentials, fixed region, no profile."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment the stack gives the function."""
    env = SETTINGS.to_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def aws(function_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """moto with the current-model parameter set."""
    handler_module.reset_clients()
    with mock_aws():
        # No bucket: the handler never reads S3 (SageMaker does, with its own role).
        ssm = boto3.client("ssm", region_name=REGION)
        ssm.put_parameter(Name=MODEL_PARAMETER, Value=MODEL, Type="String")
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        # The handler would create equal clients itself (see test_clients_are_created_lazily);
        # sharing these halves the per-test setup.
        handler_module._CLIENTS.update(ssm=ssm, sagemaker=sagemaker)
        yield {"ssm": ssm, "sagemaker": sagemaker}
    handler_module.reset_clients()
