"""The command, as a user runs it: a subprocess against a moto server on 127.0.0.1.

The child gets dummy credentials and ``AWS_ENDPOINT_URL`` pointing at a
``ThreadedMotoServer`` running in this process, so the fakes installed here (the
transform step, DescribeModel as SageMaker answers it) serve the child's calls too.
The stack's outputs reach the child through ``--outputs-file``: there is no Pulumi
CLI here, which is exactly the situation that option is for.
"""

# Fixtures are imported from cloud_fixtures (tests/pipeline/conftest.py is another
# helper's); pytest then finds them by name, which pyflakes reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloud_fixtures import (
    BUCKET,
    OUTPUTS,
    PARAMETER,
    REGION,
    SMALL,
    UNSET,
    dummy_aws,  # noqa: F401 - a fixture, used by name
    fake_transform,  # noqa: F401 - a fixture, used by name
    model_fixes,  # noqa: F401 - a fixture, used by name
)
from moto.server import ThreadedMotoServer

from model.cloud.run import REPO_ROOT, build_parser

SCRIPT = REPO_ROOT / "scripts" / "train_and_transform.py"
HEAVY = ("boto3", "botocore", "sagemaker", "pulumi", "numpy", "sklearn", "pandas")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port (its default, 0.0.0.0:5000, is never used)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def server_stack(moto_server: str) -> Iterator[dict[str, Any]]:
    """A fresh moto backend holding the stack's bucket and parameter."""
    reset = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - the loopback moto server
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=moto_server)
    ssm.put_parameter(Name=PARAMETER, Value=UNSET, Type="String")
    yield {"url": moto_server, "s3": s3, "ssm": ssm}


def _child_env(tmp_path: Path, endpoint: str | None) -> dict[str, str]:
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "PULUMI_", "SAGEMAKER_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO_ROOT),
    )
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def _run(command: list[str], tmp_path: Path, endpoint: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=tmp_path,
        env=_child_env(tmp_path, endpoint),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def _check_finished_run(result: subprocess.CompletedProcess, stack: dict[str, Any]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("Batch transform (cloud): Completed - sbt-dev-")
    assert "400 transformed from 3 files" in result.stdout
    assert "accuracy       0.9" in result.stdout
    model = stack["ssm"].get_parameter(Name=PARAMETER)["Parameter"]["Value"]
    assert model.startswith("sbt-dev-") and "--model-" in model
    keys = [o["Key"] for o in stack["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sum(key.endswith(".csv.out") for key in keys) == 3
    assert "Created in AWS by this run" in result.stderr


def test_python_m_model_cloud_end_to_end(server_stack, fake_transform, tmp_path) -> None:
    command = [sys.executable, "-m", "model.cloud", "--outputs-file", str(_outputs_file(tmp_path))]
    command += [*SMALL, "--workdir", str(tmp_path / "run"), "--logs"]
    started = time.perf_counter()
    result = _run(command, tmp_path, server_stack["url"])
    _check_finished_run(result, server_stack)
    assert "[i-0fake] transformed 3 of 3 files" in result.stderr  # --logs streamed the job's log
    assert (tmp_path / "run" / "summary.json").is_file()
    assert time.perf_counter() - started < 240


def test_the_script_end_to_end(server_stack, fake_transform, tmp_path) -> None:
    command = [sys.executable, str(SCRIPT), "--stack", "dev", "--outputs-file"]
    command += [str(_outputs_file(tmp_path)), *SMALL, "--workdir", str(tmp_path / "run")]
    _check_finished_run(_run(command, tmp_path, server_stack["url"]), server_stack)


def test_a_user_error_is_one_line_and_exit_1(tmp_path) -> None:
    command = [sys.executable, "-m", "model.cloud", "--outputs-file", str(tmp_path / "nope.json")]
    result = _run(command, tmp_path, None)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "[1/6] reading the outputs of stack dev and checking AWS access",
        f"error: outputs file {tmp_path / 'nope.json'} does not exist: write it with "
        f"`pulumi stack output --json --stack <stack> > {tmp_path / 'nope.json'}`",
    ]


def test_help_is_light() -> None:
    """Building the parser imports nothing heavy: --help and --local stay fast."""
    code = (
        "import sys, argparse\n"
        "from model.cloud.run import add_cloud_arguments, cloud_requested\n"
        "add_cloud_arguments(argparse.ArgumentParser())\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "[]"
    help_text = subprocess.run(
        [sys.executable, "-m", "model.cloud", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    for option in ("--stack", "--outputs-file", "--via-lambda", "--no-wait", "--logs", "--resume"):
        assert option in help_text


def test_cloud_requested() -> None:
    from model.cloud.run import cloud_requested

    parser = build_parser()
    assert not cloud_requested(parser.parse_args([]))
    assert cloud_requested(parser.parse_args(["--stack", "prod"]))
    assert parser.parse_args(["--stack", "--logs"]).stack == "dev"
    assert cloud_requested(parser.parse_args(["--outputs-file", "o.json"]))
    assert cloud_requested(parser.parse_args(["--resume", "artifacts/cloud/x"]))


def test_training_options_match_the_script() -> None:
    """``python -m model.cloud`` and the script take the same data options, same defaults."""
    spec = importlib.util.spec_from_file_location("train_and_transform_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script_args = vars(module.build_parser().parse_args([]))
    ours = vars(build_parser().parse_args([]))
    shared = [
        *("rows", "features", "class_balance", "seed", "eval_fraction", "transform_fraction"),
        *("files", "workdir", "data", "target"),
        *("BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms"),
        *("SplitType", "AssembleWith", "ContentType", "Accept", "InvocationsTimeoutInSeconds"),
        *("InvocationsMaxRetries", "InputFilter", "OutputFilter", "JoinSource", "Environment"),
    ]
    assert {k: script_args[k] for k in shared} == {k: ours[k] for k in shared}
