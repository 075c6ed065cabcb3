"""The handler under moto with real-shaped events: what starts a job, what does not, and
what each bad event says."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from lambda_events import (
    BUCKET,
    MODEL,
    MODEL_PARAMETER,
    PREFIX,
    S3_TEST_EVENT,
    Context,
    eventbridge_event,
    list_jobs,
    s3_event,
    s3_record,
)
from moto import mock_aws

from lambda_handler import handler as handler_module
from lambda_handler import naming
from lambda_handler.config import ConfigError
from lambda_handler.events import EventError
from lambda_handler.handler import TriggerError, handler
from lambda_handler.model_parameter import UNSET


def _input_uris(jobs: list[dict[str, Any]]) -> list[str]:
    return sorted(j["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] for j in jobs)


def test_clients_are_created_lazily_inside_the_mock(function_env: dict[str, str]) -> None:
    """Clients made on first use are moto's when moto started after the import."""
    handler_module.reset_clients()
    try:
        with mock_aws():
            boto3.client("ssm").put_parameter(Name=MODEL_PARAMETER, Value=MODEL, Type="String")
            result = handler(s3_event(s3_record("transform/input/lazy.csv")), None)
            assert set(handler_module._CLIENTS) == {"ssm", "sagemaker"}
            assert len(list_jobs(boto3.client("sagemaker"))) == 1
        assert len(result["started"]) == 1
    finally:
        handler_module.reset_clients()


def test_single_s3_record_starts_one_job_with_the_stack_settings(aws: dict[str, Any]) -> None:
    key = "transform/input/2026/01/batch.csv"
    record = s3_record(key, version_id="v-1")
    result = handler(s3_event(record), Context())

    expected_name = naming.job_name(PREFIX, BUCKET, key, naming.object_token("v-1"))
    assert [s["job_name"] for s in result["started"]] == [expected_name]
    assert result["existing"] == result["skipped"] == result["failed"] == []
    (job,) = list_jobs(aws["sagemaker"])
    assert job["TransformJobName"] == expected_name
    assert job["ModelName"] == MODEL
    assert job["TransformInput"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"s3://{BUCKET}/{key}",
    }
    assert job["TransformInput"]["ContentType"] == "text/csv"
    assert job["TransformInput"]["SplitType"] == "Line"
    # Results mirror the input key under the output prefix: <out>/2026/01/batch.csv.out
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/transform/output/2026/01"
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert job["BatchStrategy"] == "MultiRecord"
    assert job["MaxPayloadInMB"] == 6
    assert job["MaxConcurrentTransforms"] == 2


def test_several_records_start_one_job_each(aws: dict[str, Any]) -> None:
    keys = [f"transform/input/part-{i}.csv" for i in range(4)]
    result = handler(
        s3_event(*(s3_record(k, version_id=f"v{i}") for i, k in enumerate(keys))), None
    )
    assert [s["input"] for s in result["started"]] == [f"s3://{BUCKET}/{k}" for k in keys]
    assert len({s["job_name"] for s in result["started"]}) == 4
    assert _input_uris(list_jobs(aws["sagemaker"])) == sorted(f"s3://{BUCKET}/{k}" for k in keys)


@pytest.mark.parametrize(
    "key",
    [
        "transform/input/my daily file.csv",  # S3 sends my+daily+file.csv
        "transform/input/c++ & co (1).csv",  # a real '+' arrives as %2B
        "transform/input/données/été 2026.csv",  # non-ASCII arrives percent-encoded
        "transform/input/日本語/データ.csv",
        "transform/input/" + "/".join(["a-very-long-directory-name"] * 30) + "/x" * 20 + ".csv",
    ],
)
def test_encoded_and_long_keys_are_decoded_and_named_validly(aws: dict[str, Any], key: str) -> None:
    record = s3_record(key)
    assert unquote_plus(record["s3"]["object"]["key"]) == key
    result = handler(s3_event(record), None)
    (started,) = result["started"]
    assert started["input"] == f"s3://{BUCKET}/{key}"
    assert naming.is_valid_job_name(started["job_name"])
    assert _input_uris(list_jobs(aws["sagemaker"])) == [f"s3://{BUCKET}/{key}"]


def test_eventbridge_object_created_starts_a_job(aws: dict[str, Any]) -> None:
    key = "transform/input/from eventbridge.csv"  # EventBridge keys are used as delivered
    result = handler(eventbridge_event(key, version_id="eb-1"), None)
    (started,) = result["started"]
    assert started["job_name"] == naming.job_name(PREFIX, BUCKET, key, naming.object_token("eb-1"))
    assert _input_uris(list_jobs(aws["sagemaker"])) == [f"s3://{BUCKET}/{key}"]


def test_direct_invocation_uses_the_ssm_model_and_mirrored_output(aws: dict[str, Any]) -> None:
    result = handler({"input": f"s3://{BUCKET}/transform/input/sub/a.csv"}, None)
    (started,) = result["started"]
    assert started["model"] == MODEL
    assert started["output"] == f"s3://{BUCKET}/transform/output/sub"


def test_direct_invocation_overrides_model_and_output_and_accepts_a_prefix(
    aws: dict[str, Any],
) -> None:
    event = {
        "input": f"s3://{BUCKET}/transform/input/batch-7/",
        "output": f"s3://{BUCKET}/reruns/batch-7/",
        "model": "sbt-dev-model-older",
    }
    result = handler(event, None)
    (started,) = result["started"]
    (job,) = list_jobs(aws["sagemaker"])
    assert job["ModelName"] == "sbt-dev-model-older"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/reruns/batch-7"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == event["input"]
    assert started["job_name"].startswith(PREFIX)


def test_direct_request_twice_names_the_same_job_and_a_rerun_a_new_one(
    aws: dict[str, Any],
) -> None:
    event = {"input": f"s3://{BUCKET}/transform/input/a.csv"}
    first = handler(event, None)["started"][0]["job_name"]
    again = handler(event, None)["started"][0]["job_name"]  # moto does not reject duplicates
    rerun = handler({**event, "rerun": "2"}, None)["started"][0]["job_name"]
    assert first == again != rerun


def test_direct_output_under_the_input_prefix_is_refused(aws: dict[str, Any]) -> None:
    event = {
        "input": f"s3://{BUCKET}/transform/input/a.csv",
        "output": f"s3://{BUCKET}/transform/input/results/",
    }
    with pytest.raises(TriggerError, match="under the input prefix"):
        handler(event, None)
    assert list_jobs(aws["sagemaker"]) == []


def test_duplicate_delivery_in_moto_names_the_same_job(aws: dict[str, Any]) -> None:
    event = s3_event(s3_record("transform/input/dup.csv"))
    first = handler(event, None)["started"][0]["job_name"]
    second = handler(event, None)["started"][0]["job_name"]  # see test_idempotency for SageMaker
    assert first == second
    assert len(list_jobs(aws["sagemaker"])) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("transform/input/", "folder marker"),
        ("transform/input/sub/", "folder marker"),
        ("other/data.csv", "outside the input prefix"),
        ("transform/output/data.csv.out", "outside the input prefix"),
        ("transform/output/data.csv", "outside the input prefix"),
        ("transform/input/data.json", "does not end with '.csv'"),
        ("transform/input/data.csv.out", "does not end with '.csv'"),
    ],
)
def test_ignored_keys_start_nothing(aws: dict[str, Any], key: str, reason: str) -> None:
    for event in (s3_event(s3_record(key)), eventbridge_event(key)):
        result = handler(event, None)
        assert result["started"] == result["failed"] == []
        (skipped,) = result["skipped"]
        assert reason in skipped["reason"]
    assert list_jobs(aws["sagemaker"]) == []


@pytest.mark.parametrize(
    "event",
    [
        S3_TEST_EVENT,
        s3_event(s3_record("transform/input/a.csv", event_name="ObjectRemoved:Delete")),
        {**eventbridge_event("transform/input/a.csv"), "detail-type": "Object Deleted"},
    ],
    ids=["s3-test-event", "object-removed", "eventbridge-object-deleted"],
)
def test_non_upload_events_start_nothing(aws: dict[str, Any], event: dict[str, Any]) -> None:
    result = handler(event, None)
    assert len(result["skipped"]) == 1
    assert result["started"] == result["failed"] == []
    assert list_jobs(aws["sagemaker"]) == []


def _without(record: dict[str, Any], *path: str) -> dict[str, Any]:
    record = json.loads(json.dumps(record))
    target = record
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return record


def _with(record: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    record = json.loads(json.dumps(record))
    target = record
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return record


GOOD = s3_record("transform/input/good.csv")
EB = eventbridge_event("transform/input/good.csv")

BAD_EVENTS = [
    ([], EventError, "event must be a JSON object, got list"),
    ("s3://bucket/key", EventError, "event must be a JSON object, got str"),
    (None, EventError, "event must be a JSON object, got null"),
    ({}, EventError, "unrecognised event"),
    ({"bucket": BUCKET, "key": "x.csv"}, EventError, "got keys: bucket, key"),
    ({"Records": "oops"}, EventError, "Records must be a list, got str"),
    ({"Records": []}, EventError, "Records is empty"),
    ({"Records": [42]}, TriggerError, "Records[0] must be an object, got int"),
    (s3_event(_without(GOOD, "s3", "object", "key")), TriggerError, "missing s3.object.key"),
    (s3_event(_without(GOOD, "s3", "bucket")), TriggerError, "missing s3.bucket"),
    (s3_event(_with(GOOD, 7, "s3", "object", "key")), TriggerError, "must be a string, got int"),
    (s3_event(_with(GOOD, "", "s3", "object", "key")), TriggerError, "s3.object.key is empty"),
    (s3_event(_with(GOOD, "aws:dynamodb", "eventSource")), TriggerError, "expected 'aws:s3'"),
    (s3_event(_with(GOOD, "aws:sqs", "eventSource")), TriggerError, "Records[0]: missing body"),
    (s3_event(_without(GOOD, "eventName")), TriggerError, "missing eventName"),
    ({**EB, "source": "aws.ec2"}, EventError, "only aws.s3 events"),
    (_without(EB, "detail", "object", "key"), EventError, "missing object.key"),
    (_with(EB, "text", "detail"), EventError, "detail must be an object, got str"),
    ({"input": "bucket/key.csv"}, EventError, "must start with 's3://'"),
    ({"input": 5}, EventError, "input must be a string"),
    ({"input": "s3://Bad_Bucket/x.csv"}, EventError, "does not name a valid bucket"),
    ({"input": f"s3://{BUCKET}"}, EventError, "has no key"),
    ({"input": f"s3://{BUCKET}/a.csv", "ouput": "s3://b/o"}, EventError, "unknown field(s) ouput"),
    ({"input": f"s3://{BUCKET}/a.csv", "model": "my_model"}, EventError, "not a SageMaker model"),
    ({"input": f"s3://{BUCKET}/a.csv", "output": "/tmp/out"}, EventError, "output='/tmp/out'"),
    ({"input": f"s3://{BUCKET}/a.csv", "rerun": 2}, EventError, "rerun must be a string"),
]


@pytest.mark.parametrize(("event", "error", "message"), BAD_EVENTS)
def test_bad_events_say_what_is_wrong_and_start_nothing(
    aws: dict[str, Any], event: Any, error: type[Exception], message: str, capsys: Any
) -> None:
    with pytest.raises(error) as excinfo:
        handler(event, Context())
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert list_jobs(aws["sagemaker"]) == []
    # The failure is logged as a JSON line too.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(line["level"] == "ERROR" for line in lines)


def test_one_bad_record_does_not_stop_the_good_ones(aws: dict[str, Any]) -> None:
    event = s3_event(
        s3_record("transform/input/one.csv", version_id="1"),
        _without(GOOD, "s3", "object", "key"),
        s3_record("transform/input/folder/"),
        s3_record("transform/input/two.csv", version_id="2"),
    )
    with pytest.raises(TriggerError) as excinfo:
        handler(event, Context())
    result = excinfo.value.result
    assert [s["input"] for s in result["started"]] == [
        f"s3://{BUCKET}/transform/input/one.csv",
        f"s3://{BUCKET}/transform/input/two.csv",
    ]
    assert [f["where"] for f in result["failed"]] == ["Records[1]"]
    assert [s["reason"] for s in result["skipped"]] == ["folder marker"]
    assert str(excinfo.value).startswith("1 of 3 object(s) got no transform job: Records[1]")
    assert "2 other(s) started" in str(excinfo.value)
    assert len(list_jobs(aws["sagemaker"])) == 2


def test_missing_model_parameter_is_a_clear_error(aws: dict[str, Any]) -> None:
    aws["ssm"].delete_parameter(Name=MODEL_PARAMETER)
    with pytest.raises(TriggerError) as excinfo:
        handler(s3_event(s3_record("transform/input/a.csv")), None)
    assert f"SSM parameter {MODEL_PARAMETER} does not exist" in str(excinfo.value)
    assert "scripts/train_and_transform.py --stack" in str(excinfo.value)
    assert list_jobs(aws["sagemaker"]) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [(" ", "is empty"), (UNSET, "names no model yet"), ("not a model!", "not a SageMaker model")],
)
def test_empty_or_unset_model_parameter_is_a_clear_error(
    aws: dict[str, Any], value: str, message: str
) -> None:
    aws["ssm"].put_parameter(Name=MODEL_PARAMETER, Value=value, Type="String", Overwrite=True)
    with pytest.raises(TriggerError, match=message):
        handler(s3_event(s3_record("transform/input/a.csv")), None)
    assert list_jobs(aws["sagemaker"]) == []


def test_model_parameter_is_read_once_per_invocation_and_a_new_value_is_used_next(
    aws: dict[str, Any],
) -> None:
    handler(s3_event(s3_record("transform/input/a.csv", version_id="1")), None)
    aws["ssm"].put_parameter(
        Name=MODEL_PARAMETER, Value="sbt-dev-model-2", Type="String", Overwrite=True
    )
    result = handler(s3_event(s3_record("transform/input/b.csv", version_id="1")), None)
    assert result["started"][0]["model"] == "sbt-dev-model-2"


def test_an_event_naming_its_model_needs_no_parameter(aws: dict[str, Any]) -> None:
    aws["ssm"].delete_parameter(Name=MODEL_PARAMETER)
    result = handler({"input": f"s3://{BUCKET}/transform/input/a.csv", "model": "m-1"}, None)
    assert result["started"][0]["model"] == "m-1"


def test_configuration_errors_name_the_variable(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIGGER_OUTPUT_PREFIX")
    monkeypatch.setenv("TRANSFORM_INSTANCE_COUNT", "two")
    with pytest.raises(ConfigError) as excinfo:
        handler(s3_event(s3_record("transform/input/a.csv")), None)
    assert "TRIGGER_OUTPUT_PREFIX is not set" in str(excinfo.value)
    assert "TRANSFORM_INSTANCE_COUNT='two' is not a whole number" in str(excinfo.value)
    assert list_jobs(aws["sagemaker"]) == []


def test_log_lines_are_json_with_the_request_id(aws: dict[str, Any], capsys: Any) -> None:
    handler(s3_event(s3_record("transform/input/a.csv"), s3_record("elsewhere/b.csv")), Context())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["request_id"] for line in lines} == {Context.aws_request_id}
    messages = [line["message"] for line in lines]
    assert messages == ["transform job started", "skipped", "finished"]
    assert lines[0]["job_name"].startswith(PREFIX)
    assert lines[-1] | {"started": 1, "skipped": 1} == lines[-1]
