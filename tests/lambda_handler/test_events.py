"""Event parsing on its own: shapes, decoding, tokens, filters."""

from __future__ import annotations

import pytest
from lambda_events import BUCKET, S3_TEST_EVENT, eventbridge_event, s3_event, s3_record

from lambda_handler import naming
from lambda_handler.events import (
    EventError,
    ObjectRef,
    Skipped,
    ignore_reason,
    parse_event,
    parse_s3_uri,
)


def test_s3_keys_are_url_decoded_with_plus_as_space() -> None:
    (ref,) = parse_event(s3_event(s3_record("transform/input/a b+c%d é.csv")))
    assert isinstance(ref, ObjectRef)
    assert ref.key == "transform/input/a b+c%d é.csv"
    assert ref.bucket == BUCKET and ref.source == "s3" and ref.where == "Records[0]"


def test_raw_s3_encoding_examples() -> None:
    record = s3_record("x")
    record["s3"]["object"]["key"] = "transform/input/red+flower%2B%C3%A9.csv"
    (ref,) = parse_event({"Records": [record]})
    assert isinstance(ref, ObjectRef)
    assert ref.key == "transform/input/red flower+é.csv"


def test_version_is_preferred_for_the_token_and_null_ignored() -> None:
    (versioned,) = parse_event(s3_event(s3_record("k.csv", version_id="abc")))
    (unversioned,) = parse_event(s3_event(s3_record("k.csv", version_id=None)))
    (null_version,) = parse_event(s3_event(s3_record("k.csv", version_id="null")))
    assert isinstance(versioned, ObjectRef) and versioned.token == "v:abc"
    assert isinstance(unversioned, ObjectRef) and unversioned.token.startswith("e:")
    assert isinstance(null_version, ObjectRef) and null_version.token == unversioned.token


def test_eventbridge_key_is_used_as_delivered() -> None:
    (ref,) = parse_event(eventbridge_event("transform/input/a+b.csv", version_id="v9"))
    assert isinstance(ref, ObjectRef)
    assert ref.key == "transform/input/a+b.csv" and ref.token == "v:v9"


def test_direct_request_token_covers_every_field() -> None:
    base = {"input": f"s3://{BUCKET}/in/a.csv"}
    tokens = {
        parse_event(event)[0].token  # type: ignore[union-attr]
        for event in (
            base,
            base | {"model": "m"},
            base | {"output": f"s3://{BUCKET}/o/"},
            base | {"rerun": "1"},
            base | {"version": "v"},
        )
    }
    assert len(tokens) == 5
    assert parse_event(base)[0].token == naming.direct_token()  # type: ignore[union-attr]


def test_test_event_is_skipped() -> None:
    (item,) = parse_event(S3_TEST_EVENT)
    assert isinstance(item, Skipped) and "test event" in item.reason


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket-1/a/b.csv", ("bucket-1", "a/b.csv")),
        ("s3://my.bucket/dir/", ("my.bucket", "dir/")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri, "input") == expected


@pytest.mark.parametrize("uri", ["s3://ab/x", "s3://a..b/x", "https://b/x", "s3://bucket/", ""])
def test_parse_s3_uri_refuses(uri: str) -> None:
    with pytest.raises(ValueError, match="input="):
        parse_s3_uri(uri, "input")


def test_filters_apply_to_s3_sources_only() -> None:
    def ref(key: str, source: str = "s3") -> ObjectRef:
        return ObjectRef(BUCKET, key, "", source, "x")

    assert ignore_reason(ref("in/a.csv"), "in/", ".csv") is None
    assert ignore_reason(ref("in/a.CSV"), "in/", ".csv") == "does not end with '.csv'"
    assert ignore_reason(ref("in/a.parquet"), "in/", "") is None  # no suffix filter
    assert ignore_reason(ref("in/"), "in/", ".csv") == "folder marker"
    assert ignore_reason(ref("out/a.csv", "direct"), "in/", ".csv") is None


def test_unknown_shapes_list_what_is_accepted() -> None:
    with pytest.raises(EventError) as excinfo:
        parse_event({"Message": "{}"})
    assert "S3 notification ('Records', also inside SQS or SNS messages)" in str(excinfo.value)
    assert "got keys: Message" in str(excinfo.value)
