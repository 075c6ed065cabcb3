"""S3 notifications fanned out through SQS and SNS, key encodings, and URI length limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from lambda_events import (
    BUCKET,
    S3_TEST_EVENT,
    SETTINGS,
    Context,
    eventbridge_event,
    list_jobs,
    s3_event,
    s3_record,
    sns_envelope,
    sns_wrapped,
    sqs_wrapped,
)

from lambda_handler.events import BadRecord, ObjectRef, Skipped, parse_event
from lambda_handler.handler import TriggerError, handler
from lambda_handler.jobs import MAX_S3_URI, JobError, build_request

KEY = "transform/input/day 1/a+b.csv"


def refs(event: dict[str, Any]) -> list[ObjectRef]:
    items = parse_event(json.loads(json.dumps(event)))
    assert all(isinstance(item, ObjectRef) for item in items), items
    return items  # type: ignore[return-value]


def test_an_sqs_message_carrying_an_s3_notification_is_unwrapped() -> None:
    event = {"Records": [sqs_wrapped(s3_event(s3_record(KEY)), index=n) for n in range(2)]}
    first, second = refs(event)
    assert first.key == KEY and first.bucket == BUCKET and first.source == "s3"
    assert first.where == "Records[0].body.Records[0]"
    assert second.where == "Records[1].body.Records[0]"
    assert first.token == refs(s3_event(s3_record(KEY)))[0].token  # same job name


def test_an_sns_message_carrying_an_s3_notification_is_unwrapped() -> None:
    (ref,) = refs({"Records": [sns_wrapped(s3_event(s3_record(KEY)))]})
    assert ref.key == KEY and ref.where == "Records[0].Sns.Message.Records[0]"


def test_sns_to_sqs_without_raw_delivery_is_unwrapped_twice() -> None:
    (ref,) = refs({"Records": [sqs_wrapped(sns_envelope(s3_event(s3_record(KEY))))]})
    assert ref.key == KEY and ref.where == "Records[0].body.Message.Records[0]"


def test_an_eventbridge_event_delivered_through_sqs_is_unwrapped() -> None:
    (ref,) = refs({"Records": [sqs_wrapped(eventbridge_event(KEY))]})
    assert ref.key == KEY and ref.source == "eventbridge" and ref.where == "Records[0].body.detail"


def test_the_s3_test_event_inside_sqs_is_skipped() -> None:
    (item,) = parse_event({"Records": [sqs_wrapped(S3_TEST_EVENT)]})
    assert isinstance(item, Skipped) and item.where == "Records[0].body"


def test_a_bad_wrapped_message_fails_alone_and_is_named_once(aws: dict[str, Any]) -> None:
    broken = sqs_wrapped(s3_event(s3_record(KEY)))
    broken["body"] = "not json"
    event = {"Records": [broken, sqs_wrapped(s3_event(s3_record("transform/input/ok.csv")))]}
    items = parse_event(event)
    assert isinstance(items[0], BadRecord) and isinstance(items[1], ObjectRef)
    with pytest.raises(TriggerError) as raised:
        handler(event, Context())
    message = str(raised.value)
    assert message.startswith(
        "1 of 2 object(s) got no transform job: Records[0]: Records[0].body is not JSON ("
    )
    assert "Records[0]: Records[0]:" not in message  # the record is named once
    assert len(list_jobs(aws["sagemaker"])) == 1


def test_the_record_is_named_once_in_failure_messages(aws: dict[str, Any]) -> None:
    record = s3_record(KEY)
    del record["s3"]["object"]["key"]
    with pytest.raises(TriggerError) as raised:
        handler(s3_event(record), Context())
    assert str(raised.value) == (
        "1 of 1 object(s) got no transform job: Records[0]: missing s3.object.key"
    )


def test_sqs_wrapped_uploads_start_jobs(aws: dict[str, Any]) -> None:
    result = handler({"Records": [sqs_wrapped(s3_event(s3_record(KEY)))]}, Context())
    assert [entry["input"] for entry in result["started"]] == [f"s3://{BUCKET}/{KEY}"]


@pytest.mark.parametrize(
    "key", ["transform/input/a b.csv", "transform/input/a+b.csv", "transform/input/%2B%20.csv"]
)
def test_keys_decoded_from_notifications_and_taken_as_delivered_from_eventbridge(key: str) -> None:
    """S3 notifications URL-encode keys (space as '+'); EventBridge delivers them as they are."""
    (from_notification,) = refs(s3_event(s3_record(key)))
    (from_eventbridge,) = refs(eventbridge_event(key))
    assert from_notification.key == key
    assert from_eventbridge.key == key  # a literal '+' or '%2B' is not decoded


def test_an_s3_uri_longer_than_the_api_allows_is_refused_before_sending(
    aws: dict[str, Any],
) -> None:
    prefix = f"s3://{BUCKET}/"
    room = MAX_S3_URI - len(prefix) - len("transform/input/.csv")
    longest = "transform/input/" + "k" * room + ".csv"
    assert len(prefix + longest) == MAX_S3_URI
    ok = refs(eventbridge_event(longest))[0]
    assert build_request(ok, SETTINGS, "model", "job")["TransformInput"]["DataSource"]
    too_long = refs(eventbridge_event("x" + longest))[0]
    with pytest.raises(JobError, match=r"S3Uri would be 1,025 characters .* more than the 1,024"):
        build_request(too_long, SETTINGS, "model", "job")
    with pytest.raises(TriggerError, match="more than the 1,024 CreateTransformJob accepts"):
        handler(eventbridge_event(longest[:-4] + "k.csv"), Context())
    assert list_jobs(aws["sagemaker"]) == []
