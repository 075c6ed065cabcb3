"""The whole cloud run in-process against moto, outputs handed in as a dict.

Each run trains a small model (2,000 rows), publishes it, transforms three CSV
files through the fake transform step (real serving code, in-process) and scores
the downloaded .out files with model.report, the code --local uses.
"""

# Fixtures are imported from cloud_fixtures (tests/pipeline/conftest.py is another
# helper's); pytest then finds them by name, which pyflakes reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from cloud_fixtures import (
    BUCKET,
    IMAGE,
    OUTPUTS,
    PARAMETER,
    REGION,
    ROLE,
    cloud_args,
    dummy_aws,  # noqa: F401 - a fixture, used by name
    fake_transform,  # noqa: F401 - a fixture, used by name
    model_fixes,  # noqa: F401 - a fixture, used by name
    moto_stack,  # noqa: F401 - a fixture, used by name
    reader,
    s3_keys,
)
from cloud_moto import FakeTrigger

from lambda_handler import naming
from lambda_handler.config import Settings
from model.artifact import load_model_archive
from model.cloud.run import run_cloud


def _run(tmp_path: Path, outputs: dict[str, Any], *extra: str, **kwargs: Any) -> int:
    return run_cloud(cloud_args(tmp_path, *extra), reader(outputs), ask=None, **kwargs)


def _current_model() -> str:
    ssm = boto3.client("ssm", region_name=REGION)
    return ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]


def _predictions_match(workdir: Path) -> None:
    """Every downloaded .out line is what the trained model predicts for that input row."""
    model, _ = load_model_archive(workdir / "model.tar.gz")
    manifest = json.loads((workdir / "manifest.json").read_text())
    for entry in manifest["files"]:
        rows = np.loadtxt(workdir / "input" / entry["input"], delimiter=",", ndmin=2)
        expected = [str(label) for label in model.predict(rows).tolist()]
        got = (workdir / "output" / f"{entry['input']}.out").read_text().splitlines()
        assert got == expected, entry["input"]


def test_full_run_publishes_transforms_and_scores(
    moto_stack, fake_transform, model_fixes, tmp_path, capsys
) -> None:
    code = _run(tmp_path, moto_stack)
    out, err = capsys.readouterr()
    assert code == 0, err
    workdir = tmp_path / "run"
    state = json.loads((workdir / "run.json").read_text())
    run_id, model_name = state["run_id"], state["model_name"]
    prefix = f"runs/dev/{run_id}/"

    # the model: under the run's prefix, digest-pinned image, role, network isolation
    request = model_fixes.requests[model_name]
    assert request["EnableNetworkIsolation"] is True
    assert request["ExecutionRoleArn"] == ROLE
    assert request["PrimaryContainer"]["Image"] == IMAGE
    assert (
        request["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{prefix}model/model.tar.gz"
    )
    assert not request["VpcConfig"]
    assert {"Key": "run-id", "Value": run_id} in request["Tags"]
    # names: the stack's job prefix (the trigger's), valid by SageMaker's rule
    job_prefix = naming.stack_prefix("sagemaker-batch-transform", "dev")
    job_name = state["jobs"][0]["name"]
    for name in (model_name, job_name):
        assert name.startswith(job_prefix) and naming.is_valid_job_name(name)
    # the SSM parameter now names the model (the Lambda path uses it from now on)
    assert _current_model() == model_name

    # the job: several files under the run's input prefix, outside the trigger prefix
    (job,) = fake_transform.jobs
    request = job["request"]
    assert request["transform_input"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"s3://{BUCKET}/{prefix}input/",
    }
    assert request["transform_input"]["SplitType"] == "Line"
    assert request["batch_strategy"] == "MultiRecord"
    assert request["max_payload_in_mb"] is None  # unset: the container's execution-parameters
    assert request["transform_output"]["AssembleWith"] == "Line"
    assert request["transform_resources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    inputs = [f"{prefix}input/part-000{i}.csv" for i in range(3)]
    outputs = [f"{prefix}output/part-000{i}.csv.out" for i in range(3)]
    assert s3_keys(prefix) == sorted([f"{prefix}model/model.tar.gz", *inputs, *outputs])
    assert not s3_keys(OUTPUTS["input_prefix"])

    # the result: scored like --local, predictions exactly the model's
    _predictions_match(workdir)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["mode"] == "cloud" and summary["status"] == "Completed"
    assert summary["score"]["rows"] == 400 and summary["score"]["accuracy"] > 0.9
    # report.html next to summary.json, named in it (issue 15), with the ROC curve drawn
    report = workdir / "report.html"
    assert report.is_file()
    assert summary["artifacts"]["report"] == str(report)
    assert 'alt="ROC curve"' in report.read_text(encoding="utf-8")
    assert out.startswith(f"Batch transform (cloud): Completed - {job_name}\n")
    assert "accuracy" in out and "400 transformed from 3 files" in out
    # what exists now, with the commands to clean it up
    assert f"aws s3 rm --recursive s3://{BUCKET}/{prefix} --region {REGION}" in err
    assert f"aws sagemaker delete-model --model-name {model_name} --region {REGION}" in err
    assert "--value 'none (no model registered yet)'" in err


def test_job_parameters_come_from_the_flags(moto_stack, fake_transform, tmp_path) -> None:
    extra = ["--instance-type", "ml.c5.xlarge", "--instance-count", "2"]
    extra += ["--MaxPayloadInMB", "4", "--max-concurrent-transforms", "3"]
    extra += ["--BatchStrategy", "SingleRecord", "--env", "SERVING_PREDICT_PROBA=false"]
    assert _run(tmp_path, moto_stack, *extra) == 0
    request = fake_transform.jobs[0]["request"]
    assert request["transform_resources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2}
    assert request["max_payload_in_mb"] == 4
    assert request["max_concurrent_transforms"] == 3
    assert request["batch_strategy"] == "SingleRecord"
    assert request["environment"] == {"SERVING_PREDICT_PROBA": "false"}
    assert request["model_client_config"] == {
        "InvocationsTimeoutInSeconds": 600,
        "InvocationsMaxRetries": 3,
    }


def test_outputs_file_instead_of_the_cli(moto_stack, fake_transform, tmp_path, capsys) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(moto_stack))

    def no_cli(stack: str, project_dir: Path) -> dict[str, Any]:
        raise AssertionError("--outputs-file must win over the Automation API")

    args = cloud_args(tmp_path, "--outputs-file", str(outputs_file))
    assert run_cloud(args, no_cli, ask=None) == 0
    assert "Completed" in capsys.readouterr().out


def test_via_lambda_follows_the_job_the_trigger_started(
    moto_stack, fake_transform, monkeypatch, tmp_path, capsys
) -> None:
    settings = Settings(
        job_name_prefix=naming.stack_prefix("sagemaker-batch-transform", "dev"),
        input_prefix=OUTPUTS["input_prefix"],
        output_prefix=OUTPUTS["output_prefix"],
        model_parameter=PARAMETER,
    )
    trigger = FakeTrigger(settings, lambda service: boto3.client(service, region_name=REGION))
    trigger.install(monkeypatch)
    code = _run(tmp_path, moto_stack, "--via-lambda", "--lambda-timeout", "20")
    trigger.join()
    out, err = capsys.readouterr()
    assert code == 0, err
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    run_id = state["run_id"]
    # the Lambda (the real handler) started one job per file, named as the script expected
    started = sorted(r["started"][0]["job_name"] for r in trigger.results)
    assert sorted(job["name"] for job in state["jobs"]) == started
    assert len(started) == 3
    # ... with the model the script just registered (read from SSM by the handler)
    assert {job["request"]["model_name"] for job in fake_transform.jobs} == {state["model_name"]}
    # input under the trigger's prefix, results under its output prefix
    assert s3_keys(f"transform/input/{run_id}/") == [
        f"transform/input/{run_id}/part-000{i}.csv" for i in range(3)
    ]
    assert s3_keys(f"transform/output/{run_id}/") == [
        f"transform/output/{run_id}/part-000{i}.csv.out" for i in range(3)
    ]
    assert not s3_keys(f"runs/dev/{run_id}/input/")
    _predictions_match(tmp_path / "run")
    assert "400 transformed from 3 files" in out
    assert "the trigger started" in err


def test_via_lambda_without_a_job_names_where_to_look(moto_stack, model_fixes, tmp_path, capsys):
    # no trigger installed: the Lambda never runs
    code = _run(tmp_path, moto_stack, "--via-lambda", "--lambda-timeout", "0")
    err = capsys.readouterr().err
    assert code == 1
    assert "error: the trigger started no job" in err
    assert "aws logs tail /aws/lambda/sbt-dev-trigger" in err
    assert OUTPUTS["failed_events_queue_url"] in err
    assert "Created in AWS by this run" in err  # the model and the uploads are listed


def test_via_lambda_needs_the_trigger_outputs(moto_stack, tmp_path, capsys) -> None:
    outputs = {k: v for k, v in moto_stack.items() if k not in ("input_prefix", "output_prefix")}
    assert _run(tmp_path, outputs, "--via-lambda") == 1
    err = capsys.readouterr().err
    assert "lack input_prefix, output_prefix (--via-lambda needs the trigger's outputs)" in err


def test_failed_job_prints_reason_and_last_log_lines(
    moto_stack, fake_transform, tmp_path, capsys
) -> None:
    fake_transform.fail.add("part-0001.csv")
    code = _run(tmp_path, moto_stack)
    err = capsys.readouterr().err
    assert code == 1
    assert "ended Failed" in err
    assert "FailureReason: ClientError: See job logs" in err
    assert "last 2 log lines:" in err
    assert "[i-0fake] ERROR part-0001.csv: 400 Bad Request from the model container" in err
    assert "error: transform job sbt-dev-" in err and "Failed files: part-0001.csv" in err
    assert "Created in AWS by this run" in err
    assert "--resume" not in err  # the job ended: nothing to resume


def test_missing_output_names_the_file(moto_stack, fake_transform, tmp_path, capsys) -> None:
    fake_transform.skip.add("part-0002.csv")
    code = _run(tmp_path, moto_stack)
    err = capsys.readouterr().err
    assert code == 1
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    expected = f"s3://{BUCKET}/runs/dev/{state['run_id']}/output/part-0002.csv.out"
    assert f"produced no output for part-0002.csv (expected {expected})" in err
    assert not (tmp_path / "run" / "output").exists()  # nothing half-downloaded


def test_no_wait_then_resume(moto_stack, fake_transform, tmp_path, capsys) -> None:
    assert _run(tmp_path, moto_stack, "--no-wait") == 0
    out, _ = capsys.readouterr()
    workdir = tmp_path / "run"
    state = json.loads((workdir / "run.json").read_text())
    job = state["jobs"][0]["name"]
    assert out.startswith(f"transform job started: {job}\n")
    assert f"python scripts/train_and_transform.py --resume {workdir}" in out
    assert f"aws sagemaker describe-transform-job --transform-job-name {job}" in out
    assert not (workdir / "output").exists()

    from model.cloud.run import build_parser

    args = build_parser().parse_args(["--resume", str(workdir)])
    assert run_cloud(args, ask=None) == 0
    out, _ = capsys.readouterr()
    assert f"Completed - {job}" in out and "400 transformed from 3 files" in out
    _predictions_match(workdir)


def test_ctrl_c_leaves_the_job_running_and_resume_finishes_it(
    moto_stack, fake_transform, monkeypatch, tmp_path, capsys
) -> None:
    fake_transform.hold = True

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    questions: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr("sagemaker.core.resources.time.sleep", ctrl_c)
        code = run_cloud(
            cloud_args(tmp_path), reader(moto_stack), ask=lambda q: questions.append(q) or "n"
        )
    err = capsys.readouterr().err
    workdir = tmp_path / "run"
    job = json.loads((workdir / "run.json").read_text())["jobs"][0]["name"]
    assert code == 130
    assert "Stop it? [y/N]" in questions[0]
    assert f"interrupted: transform job {job} left running on SageMaker." in err
    assert f"`python scripts/train_and_transform.py --resume {workdir}`" in err
    assert f"aws sagemaker describe-transform-job --transform-job-name {job}" in err
    assert "Created in AWS by this run" in err

    fake_transform.finish(job)  # meanwhile, on SageMaker
    from model.cloud.run import build_parser

    assert run_cloud(build_parser().parse_args(["--resume", str(workdir)]), ask=None) == 0
    assert f"Completed - {job}" in capsys.readouterr().out


def test_resume_of_a_corrupt_run_state(tmp_path, capsys) -> None:
    from model.cloud.run import build_parser

    (tmp_path / "run.json").write_text("{not json")
    assert run_cloud(build_parser().parse_args(["--resume", str(tmp_path)]), ask=None) == 1
    assert "run.json is not a readable run state" in capsys.readouterr().err


def test_resume_of_a_directory_without_a_run(tmp_path, capsys) -> None:
    from model.cloud.run import build_parser

    args = build_parser().parse_args(["--resume", str(tmp_path)])
    assert run_cloud(args, ask=None) == 1
    assert "run.json does not exist: --resume takes the run directory" in capsys.readouterr().err


def test_missing_output_key_creates_nothing(moto_stack, tmp_path, capsys) -> None:
    outputs = {k: v for k, v in moto_stack.items() if k not in ("image_uri", "bucket_name")}
    assert _run(tmp_path, outputs) == 1
    err = capsys.readouterr().err
    assert "error: stack 'dev' outputs lack bucket_name, image_uri" in err
    assert "pulumi up --stack dev" in err
    assert "Created in AWS" not in err
    assert not (tmp_path / "run").exists()


def test_local_and_stack_exclude_each_other(tmp_path, capsys) -> None:
    args = cloud_args(tmp_path)
    args.local = True
    assert run_cloud(args, reader(OUTPUTS), ask=None) == 1
    assert "--local runs without AWS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--instance-type", "m5.large"], "--instance-type 'm5.large' is not a SageMaker"),
        (["--instance-count", "0"], "--instance-count must be at least 1"),
        (["--MaxPayloadInMB", "60", "--MaxConcurrentTransforms", "2"], "at most 100"),
    ],
)
def test_bad_flags_fail_before_any_aws_call(tmp_path, capsys, extra, message) -> None:
    def never(stack: str, project_dir: Path) -> dict[str, Any]:
        raise AssertionError("outputs read before the flags were checked")

    assert run_cloud(cloud_args(tmp_path, *extra), never, ask=None) == 1
    assert message in capsys.readouterr().err


def test_unpinned_image_is_warned_about(moto_stack, fake_transform, tmp_path, capsys) -> None:
    outputs = dict(moto_stack, image_uri=moto_stack["ecr_repository_url"] + ":latest")
    assert _run(tmp_path, outputs, "--no-wait") == 0
    assert "is not pinned by digest" in capsys.readouterr().err


def test_used_run_directory_fails_before_any_aws_call(tmp_path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "old.txt").write_text("x")

    def never(stack: str, project_dir: Path) -> dict[str, Any]:
        raise AssertionError("outputs read before the run directory was checked")

    assert run_cloud(cloud_args(tmp_path), never, ask=None) == 1
    assert "already exists and is not empty; choose a new --workdir" in capsys.readouterr().err


def test_a_users_table_runs_on_the_cloud_path_too(
    moto_stack, fake_transform, tmp_path, capsys
) -> None:
    from model.cloud.run import build_parser
    from model.data import read_transform_input

    rng = np.random.default_rng(0)
    rows = 1000
    plan = rng.choice(["basic", "pro"], rows)
    age = rng.normal(40, 10, rows)
    churn = np.where((plan == "pro") ^ (rng.random(rows) < 0.05), "yes", "no")
    table = tmp_path / "churn.csv"
    pd.DataFrame({"age": age, "plan": plan, "churn": churn}).to_csv(table, index=False)
    args = build_parser().parse_args(
        [
            *("--files", "3", "--poll-seconds", "1", "--workdir", str(tmp_path / "run")),
            *("--stack", "dev", "--data", str(table), "--target", "churn"),
        ]
    )
    code = run_cloud(args, reader(moto_stack), ask=None)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "[2/6] reading the data and training" in err
    assert "200 transformed from 3 files" in out and "accuracy       0.9" in out
    workdir = tmp_path / "run"
    model, metadata = load_model_archive(workdir / "model.tar.gz")
    assert metadata["feature_names"] == ["age", "plan"]
    for part in sorted((workdir / "input").glob("*.csv")):
        expected = [str(v) for v in model.predict(read_transform_input(part, metadata))]
        assert (workdir / "output" / f"{part.name}.out").read_text().splitlines() == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lambda-timeout", "-1"], "--lambda-timeout must be 0 seconds or more"),
        (["--poll-seconds", "0"], "--poll-seconds must be at least 1"),
        (["--target", "churn"], "--target names the label column of --data PATH"),
        (["--eval-fraction", "0.9"], "leave no rows for training"),
    ],
)
def test_more_bad_flags_fail_before_any_aws_call(tmp_path, capsys, extra, message) -> None:
    def never(stack: str, project_dir: Path) -> dict[str, Any]:
        raise AssertionError("outputs read before the flags were checked")

    assert run_cloud(cloud_args(tmp_path, *extra), never, ask=None) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
