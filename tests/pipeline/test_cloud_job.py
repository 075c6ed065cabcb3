"""Starting and following transform jobs: request shapes, status, failures, logs, Ctrl-C.

moto finishes a job at once, so status transitions (InProgress -> Failed), the stop
call (not implemented by moto) and the interruption are driven with botocore's
Stubber on the very client the SDK uses (``AwsContext.sdk_client``). Everything runs
inside ``mock_aws`` so no call can leave the process.
"""

# Fixtures come from cloud_fixtures (tests/pipeline/conftest.py is another helper's).

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cloud_fixtures import (
    REGION,
    dummy_aws,  # noqa: F401 - a fixture, used by name
)
from cloud_moto import FakeTransform
from moto import mock_aws

from model.batch.params import TransformJobParameters
from model.cloud.aws import AwsContext
from model.cloud.job import (
    JobError,
    JobInterruptedError,
    JobSpec,
    Watcher,
    check_resources,
    create_request,
    describe_settings,
    last_log_lines,
    wait_for_creation,
)
from model.console import Terminated

NAME = "sbt-dev-de49--run-20260712-101500-3f2a1c"
ARN = f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{NAME}"
CREATED = datetime.now(UTC) - timedelta(minutes=3)


def describe(status: str, reason: str | None = None, name: str = NAME) -> dict[str, Any]:
    """A complete DescribeTransformJob answer."""
    answer: dict[str, Any] = {
        "TransformJobName": name,
        "TransformJobArn": ARN.replace(NAME, name),
        "TransformJobStatus": status,
        "ModelName": "sbt-dev-de49--model-20260712-101500-3f2a1c",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://b/out/", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": CREATED,
    }
    if status != "InProgress":
        answer["TransformStartTime"] = CREATED + timedelta(minutes=4)
        answer["TransformEndTime"] = CREATED + timedelta(minutes=6)
    if reason:
        answer["FailureReason"] = reason
    return answer


@pytest.fixture
def context() -> Any:
    with mock_aws():
        yield AwsContext(REGION)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """TransformJob.wait's poll sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("sagemaker.core.resources.time.sleep", slept.append)
    return slept


def interrupt_on_sleep(monkeypatch: pytest.MonkeyPatch, error: type = KeyboardInterrupt) -> None:
    """Ctrl-C while wait sleeps between two polls (where it usually lands)."""

    def sleep(seconds: float) -> None:
        raise error

    monkeypatch.setattr("sagemaker.core.resources.time.sleep", sleep)


def watcher(context: AwsContext, said: list[str], **options: Any) -> Watcher:
    options.setdefault("ask", None)
    return Watcher(context, say=said.append, check_hint="HINT", poll_seconds=5, **options)


# -- the request ------------------------------------------------------------------------


def test_create_request_defaults() -> None:
    spec = JobSpec(NAME, "model", "s3://b/in/", "s3://b/out/")
    request = create_request(spec)
    assert request["batch_strategy"] == "MultiRecord"
    assert "max_payload_in_mb" not in request and "max_concurrent_transforms" not in request
    assert "data_processing" not in request and "environment" not in request
    assert request["transform_input"].split_type == "Line"
    assert request["transform_input"].content_type == "text/csv"
    assert request["transform_input"].data_source.s3_data_source.s3_uri == "s3://b/in/"
    assert request["transform_output"].assemble_with == "Line"
    assert request["transform_resources"].instance_type == "ml.m5.large"
    assert describe_settings(spec) == (
        "text/csv, MultiRecord, payload from the container, 1 x ml.m5.large"
    )


def test_create_request_with_everything_set() -> None:
    parameters = TransformJobParameters(
        BatchStrategy="SingleRecord",
        MaxPayloadInMB=10,
        MaxConcurrentTransforms=4,
        Accept="text/csv",
        InputFilter="$[1:]",
        JoinSource="Input",
        Environment={"SERVING_PREDICT_PROBA": "true"},
    )
    spec = JobSpec(
        NAME, "m", "s3://b/in/", "s3://b/out/", "ml.c5.2xlarge", 3, parameters, "arn:kms", {}
    )
    request = create_request(spec)
    assert request["batch_strategy"] == "SingleRecord"
    assert request["max_payload_in_mb"] == 10 and request["max_concurrent_transforms"] == 4
    assert request["transform_output"].kms_key_id == "arn:kms"
    assert request["transform_output"].accept == "text/csv"
    processing = request["data_processing"]
    assert (processing.input_filter, processing.output_filter, processing.join_source) == (
        "$[1:]",
        "$",
        "Input",
    )
    assert request["environment"] == {"SERVING_PREDICT_PROBA": "true"}
    assert "4 in flight, 3 x ml.c5.2xlarge" in describe_settings(spec)


KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("instance_type", "volume_key"),
    [("ml.m5.xlarge", KEY), ("ml.m5d.xlarge", None), ("ml.g4dn.xlarge", None)],
)
def test_stack_key_encrypts_the_volume_where_sagemaker_accepts_one(
    instance_type: str, volume_key: str | None
) -> None:
    """Like the Lambda's jobs: no VolumeKmsKeyId on local NVMe storage (refused there)."""
    spec = JobSpec(NAME, "m", "s3://b/in/", "s3://b/out/", instance_type, kms_key_id=KEY)
    request = create_request(spec)
    resources = request["transform_resources"]
    assert request["transform_output"].kms_key_id == KEY  # the output always
    assert ("volume_kms_key_id" in resources.model_fields_set) is (volume_key is not None)
    if volume_key:
        assert resources.volume_kms_key_id == volume_key


def test_no_stack_key_no_volume_key() -> None:
    request = create_request(JobSpec(NAME, "m", "s3://b/in/", "s3://b/out/", "ml.m5.xlarge"))
    assert "volume_kms_key_id" not in request["transform_resources"].model_fields_set
    assert "kms_key_id" not in request["transform_output"].model_fields_set


def test_split_type_none_sets_no_batch_strategy() -> None:
    spec = JobSpec(
        NAME, "m", "s3://b/in/", "s3://b/out/", parameters=TransformJobParameters(SplitType="None")
    )
    assert "batch_strategy" not in create_request(spec)


@pytest.mark.parametrize(
    ("instance_type", "count", "message"),
    [
        ("m5.large", 1, "is not a SageMaker instance type"),
        ("ml.m5", 1, "is not a SageMaker instance type"),
        ("ml.m5.large", 0, "--instance-count must be at least 1"),
    ],
)
def test_bad_resources(instance_type: str, count: int, message: str) -> None:
    with pytest.raises(JobError, match=message):
        check_resources(instance_type, count)


# -- following ----------------------------------------------------------------------------


def test_in_progress_then_failed_reports_status_and_reason(context, no_sleep) -> None:
    said: list[str] = []
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))  # get
        stub.add_response("describe_transform_job", describe("InProgress"))  # first poll
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response(
            "describe_transform_job",
            describe("Failed", "AlgorithmError: See job logs for more information"),
        )
        (result,) = watcher(context, said).follow([NAME])
        stub.assert_no_pending_responses()
    assert result.status == "Failed"
    assert result.failure_reason == "AlgorithmError: See job logs for more information"
    assert result.seconds == 120.0
    assert no_sleep == [5, 5]
    # one line per status change, with the time since the job was created
    assert len(said) == 2
    assert re.fullmatch(rf"  {NAME}: InProgress \(0:0[3-9]:\d\d elapsed\)", said[0])
    assert re.fullmatch(rf"  {NAME}: Failed \(0:0[3-9]:\d\d elapsed\)", said[1])


def test_stopped_is_reported_as_such(context, no_sleep) -> None:
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("Stopping"))
        stub.add_response("describe_transform_job", describe("Stopping"))
        stub.add_response("describe_transform_job", describe("Stopped"))
        (result,) = watcher(context, []).follow([NAME])
    assert result.status == "Stopped" and result.failure_reason is None


def test_heartbeat_without_a_live_panel(context, no_sleep, monkeypatch) -> None:
    ticks = iter([0.0, 0.0, 30.0, 61.0, 62.0, 200.0, 200.0])
    said: list[str] = []
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        for _ in range(3):
            stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("Completed"))
        watcher(context, said, clock=lambda: next(ticks)).follow([NAME])
    assert [line.split(": ", 1)[1].split(" (")[0] for line in said] == [
        "InProgress",
        "still InProgress",
        "Completed",
    ]


def test_lost_track_of_the_job(context, no_sleep) -> None:
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_client_error("describe_transform_job", "AccessDeniedException", "no describe")
        with pytest.raises(JobError) as caught:
            watcher(context, []).follow([NAME])
    assert f"lost track of transform job {NAME} (AccessDeniedException: no describe)" in str(
        caught.value
    )
    assert "HINT" in str(caught.value)


def test_unknown_job(context) -> None:
    with pytest.raises(JobError, match=f"cannot find transform job {NAME}"):
        watcher(context, []).follow([NAME])


# -- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_then_yes_stops_the_job(context, monkeypatch) -> None:
    interrupt_on_sleep(monkeypatch)
    questions: list[str] = []

    def ask(question: str) -> str:
        questions.append(question)
        return "y"

    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("stop_transform_job", {}, {"TransformJobName": NAME})
        with pytest.raises(JobInterruptedError) as caught:
            watcher(context, [], ask=ask).follow([NAME])
        stub.assert_no_pending_responses()
    assert caught.value.exit_code == 130
    assert f"stop requested for transform job {NAME}" in str(caught.value)
    assert "HINT" in str(caught.value)
    assert "is still running on SageMaker (billed until it ends). Stop it? [y/N]" in questions[0]


@pytest.mark.parametrize("answer", ["", "n", EOFError, KeyboardInterrupt])
def test_ctrl_c_then_no_leaves_it_running(context, monkeypatch, answer) -> None:
    interrupt_on_sleep(monkeypatch)

    def ask(question: str) -> str:
        if isinstance(answer, type):
            raise answer
        return answer

    with Stubber(context.sdk_client()) as stub:  # no stop_transform_job queued
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        with pytest.raises(JobInterruptedError) as caught:
            watcher(context, [], ask=ask).follow([NAME])
    assert caught.value.exit_code == 130
    assert str(caught.value) == f"transform job {NAME} left running on SageMaker. HINT"


def test_sigterm_never_asks_and_leaves_it_running(context, monkeypatch) -> None:
    interrupt_on_sleep(monkeypatch, Terminated)

    def ask(question: str) -> str:
        raise AssertionError("SIGTERM must not prompt")

    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        with pytest.raises(JobInterruptedError) as caught:
            watcher(context, [], ask=ask).follow([NAME])
    assert caught.value.exit_code == 143
    assert "left running" in str(caught.value)


def test_no_terminal_no_question(context, monkeypatch) -> None:
    interrupt_on_sleep(monkeypatch)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        w = Watcher(context, say=[].append, check_hint="HINT")  # ask=True: input if a tty
        assert w.ask is None
        with pytest.raises(JobInterruptedError, match="left running"):
            w.follow([NAME])


def test_ctrl_c_with_several_jobs_stops_the_unfinished_ones(context, monkeypatch) -> None:
    other = NAME.replace("run", "ru2")
    sleeps = iter([None])

    def sleep(seconds: float) -> None:
        if next(sleeps, "stop") == "stop":
            raise KeyboardInterrupt

    monkeypatch.setattr("sagemaker.core.resources.time.sleep", sleep)
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("Completed"))  # first one done
        stub.add_response("describe_transform_job", describe("InProgress", name=other))
        stub.add_response("describe_transform_job", describe("InProgress", name=other))
        stub.add_response("stop_transform_job", {}, {"TransformJobName": other})
        with pytest.raises(JobInterruptedError) as caught:
            watcher(context, [], ask=lambda q: "yes").follow([NAME, other])
        stub.assert_no_pending_responses()
    assert f"stop requested for transform job {other}:" in str(caught.value)


def test_stop_that_fails_says_how_to_stop_by_hand(context, monkeypatch) -> None:
    interrupt_on_sleep(monkeypatch)
    with Stubber(context.sdk_client()) as stub:
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_response("describe_transform_job", describe("InProgress"))
        stub.add_client_error("stop_transform_job", "AccessDeniedException", "not allowed")
        with pytest.raises(JobInterruptedError) as caught:
            watcher(context, [], ask=lambda q: "y").follow([NAME])
    assert "stopping failed for" in str(caught.value)
    assert f"aws sagemaker stop-transform-job --transform-job-name NAME --region {REGION}" in str(
        caught.value
    )


# -- logs ---------------------------------------------------------------------------------


def _moto_job(name: str = NAME) -> None:
    boto3.client("sagemaker", region_name=REGION).create_transform_job(
        TransformJobName=name,
        ModelName="m",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i/"}}
        },
        TransformOutput={"S3OutputPath": "s3://b/o/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )


def test_logs_are_streamed_while_waiting(context) -> None:
    _moto_job()
    FakeTransform.write_logs("123456789012", REGION, NAME, ["starting [model] server", "ready"])
    said: list[str] = []
    (result,) = watcher(context, said, logs=True).follow([NAME])
    assert result.status == "Completed"
    assert "  [i-0fake] starting [model] server" in said
    assert "  [i-0fake] ready" in said


def test_live_panel_on_a_terminal(context, monkeypatch) -> None:
    import rich
    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr(rich, "_console", Console(file=screen, force_terminal=True, width=100))
    _moto_job()
    said: list[str] = []
    watcher(context, said).follow([NAME])
    assert "Waiting for TransformJob" in screen.getvalue()  # the SDK's panel was drawn
    (line,) = said  # the elapsed time is wall-clock: any value, but in h:mm:ss
    assert re.fullmatch(rf"  {NAME}: Completed \(\d+:\d\d:\d\d elapsed\)", line)


def test_last_log_lines_merge_instances_in_time_order(context) -> None:
    logs = boto3.client("logs", region_name=REGION)
    group = "/aws/sagemaker/TransformJobs"
    logs.create_log_group(logGroupName=group)
    base = int(datetime.now(UTC).timestamp() * 1000) - 60_000  # CloudWatch drops old events
    for stream, start in ((f"{NAME}/i-a", 0), (f"{NAME}/i-b", 1), ("other-job/i-a", 2)):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[
                {"timestamp": base + start + 10 * i, "message": f"{stream} {i}"} for i in range(30)
            ],
        )
    lines = last_log_lines(context, NAME, limit=4)
    assert lines == [
        f"[i-a] {NAME}/i-a 28",
        f"[i-b] {NAME}/i-b 28",
        f"[i-a] {NAME}/i-a 29",
        f"[i-b] {NAME}/i-b 29",
    ]


def test_last_log_lines_without_logs(context) -> None:
    assert last_log_lines(context, NAME) == []


# -- jobs started by the trigger --------------------------------------------------------


def test_wait_for_creation(context) -> None:
    names = [NAME, NAME + "x"]
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        _moto_job(names[len(polls) - 1])  # one job appears per poll

    clock = iter(range(100))
    said: list[str] = []
    missing = wait_for_creation(
        context, names, timeout=60, say=said.append, sleep=sleep, clock=lambda: next(clock)
    )
    assert missing == []
    assert said == [f"  the trigger started {NAME}", f"  the trigger started {NAME}x"]


def test_wait_for_creation_times_out(context) -> None:
    clock = iter([0.0, 0.0, 5.0, 11.0])
    missing = wait_for_creation(
        context, [NAME], timeout=10, sleep=lambda s: None, clock=lambda: next(clock)
    )
    assert missing == [NAME]
