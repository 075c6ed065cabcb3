"""Turn the accepted event shapes into references to S3 objects.

1. S3 event notifications: ``{"Records": [{"eventSource": "aws:s3", "eventName":
   "ObjectCreated:Put", "s3": {"bucket": {"name": ...}, "object": {"key": ...}}}]}``.
   S3 URL-encodes keys in these (``my file.csv`` arrives as ``my+file.csv``,
   ``é`` as ``%C3%A9``; S3 user guide, "Event message structure"), so keys are
   decoded with ``unquote_plus``.
2. The same notifications fanned out through SQS or SNS (AWS's documented fan-out
   patterns): an SQS record (``eventSource: aws:sqs``) carries the notification as
   the JSON string ``body``, an SNS record (``EventSource: aws:sns``) as
   ``Sns.Message``, and an SQS queue subscribed to SNS without raw delivery gets the
   SNS envelope (``{"Type": "Notification", "Message": ...}``) as its body. Each is
   unwrapped and parsed like a direct delivery; messages are named by where they sit,
   e.g. ``Records[0].body.Records[0]``.
3. EventBridge events from S3: ``{"source": "aws.s3", "detail-type": "Object Created",
   "detail": {"bucket": {"name": ...}, "object": {"key": ...}}}``; the key is used as
   delivered. AWS documents URL-encoding only for the notification format above (the
   EventBridge page, "EventBridge event message structure", says nothing of it and
   its sample key is plain), and keys such as ``test+b.png`` or ``%2B%20%%%.png``
   arrive unencoded in EventBridge events (aws-solutions-library-samples/
   guidance-for-medialake-on-aws#21, tested against S3). Decoding them would turn a
   real ``+`` into a space.
4. A direct invocation for reruns and tests: ``{"input": "s3://bucket/key",
   "output": "s3://bucket/prefix" (optional), "model": "name" (optional),
   "version": "..." (optional), "rerun": "..." (optional)}``. An input ending in
   ``/`` transforms every object under that prefix.

Whole-event problems raise :class:`EventError`; a bad record among several becomes a
:class:`BadRecord` so the good ones still run. Pure standard library. The records are
NamedTuples rather than dataclasses: they cost a tenth as much to define, which
counts in a cold start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from lambda_handler import naming

__all__ = [
    "BadRecord",
    "EventError",
    "ObjectRef",
    "Skipped",
    "ignore_reason",
    "parse_event",
    "parse_s3_uri",
]

DIRECT_FIELDS = ("input", "output", "model", "version", "rerun")
# Bucket naming rules (S3 user guide): 3-63 chars, lower-case letters, digits, dots, hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class EventError(ValueError):
    """The event as a whole cannot be understood; the message says what is wrong."""


class ObjectRef(NamedTuple):
    """One S3 object (or, for direct requests, a prefix) to transform."""

    bucket: str
    key: str
    token: str  # version identity for the job name, see lambda_handler.naming
    source: str  # "s3", "eventbridge" or "direct"
    where: str  # where in the event it came from, for messages
    model: str | None = None
    output: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Skipped(NamedTuple):
    """Something in the event that is deliberately not a transform input."""

    where: str
    reason: str
    uri: str | None = None


class BadRecord(NamedTuple):
    """One record that cannot be used; the others in the event still are."""

    where: str
    error: str


Item = ObjectRef | Skipped | BadRecord


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _get_str(obj: Mapping[str, Any], path: tuple[str, ...], where: str, *, required: bool) -> str:
    """Follow ``path`` through nested objects; raise ValueError naming the field."""
    current: Any = obj
    for depth, part in enumerate(path):
        dotted = ".".join(path[: depth + 1])
        if not isinstance(current, Mapping):
            raise ValueError(f"{where}: {'.'.join(path[:depth])} must be an object")
        if part not in current or current[part] is None:
            if required:
                raise ValueError(f"{where}: missing {dotted}")
            return ""
        current = current[part]
    if not isinstance(current, str):
        raise ValueError(f"{where}: {'.'.join(path)} must be a string, got {_type_name(current)}")
    if required and not current:
        raise ValueError(f"{where}: {'.'.join(path)} is empty")
    return current


def parse_s3_uri(uri: object, field: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key; ValueError says what is wrong."""
    if not isinstance(uri, str):
        raise ValueError(f"{field} must be a string like 's3://bucket/key', got {_type_name(uri)}")
    if not uri.startswith("s3://"):
        raise ValueError(f"{field}={uri!r} must start with 's3://'")
    bucket, _, key = uri[5:].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{field}={uri!r} does not name a valid bucket")
    if not key:
        raise ValueError(f"{field}={uri!r} has no key after the bucket name")
    return bucket, key


def _s3_records(records: object, prefix: str = "") -> list[Item]:
    if not isinstance(records, list):
        raise EventError(f"{prefix}Records must be a list, got {_type_name(records)}")
    if not records:
        raise EventError(f"{prefix}Records is empty: nothing to transform")
    items: list[Item] = []
    for index, record in enumerate(records):
        where = f"{prefix}Records[{index}]"
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"{where} must be an object, got {_type_name(record)}")
            source = record.get("eventSource", record.get("EventSource"))
            if source in _WRAPPERS:
                items.extend(_unwrap(record, source, where))
                continue
            if source != "aws:s3":
                raise ValueError(
                    f"{where}: eventSource is {source!r}; expected 'aws:s3' (or an SQS / SNS "
                    "message carrying an S3 notification)"
                )
            event_name = _get_str(record, ("eventName",), where, required=True)
            bucket = _get_str(record, ("s3", "bucket", "name"), where, required=True)
            raw_key = _get_str(record, ("s3", "object", "key"), where, required=True)
            key = unquote_plus(raw_key)
            if not event_name.startswith("ObjectCreated:"):
                items.append(
                    Skipped(where, f"{event_name} is not an upload", f"s3://{bucket}/{key}")
                )
                continue
            token = naming.object_token(
                _get_str(record, ("s3", "object", "versionId"), where, required=False),
                _get_str(record, ("s3", "object", "eTag"), where, required=False),
                _get_str(record, ("s3", "object", "sequencer"), where, required=False),
            )
            items.append(ObjectRef(bucket, key, token, "s3", where))
        except (ValueError, EventError) as exc:
            items.append(BadRecord(where, _without_prefix(str(exc), where)))
    return items


# Where SQS and SNS records keep the message they carry (Lambda event shapes).
_WRAPPERS = {"aws:sqs": ("body",), "aws:sns": ("Sns", "Message")}


def _unwrap(record: Mapping[str, Any], source: str, where: str) -> list[Item]:
    """The S3 notification (or EventBridge event) inside an SQS or SNS record."""
    path = _WRAPPERS[source]
    inner = f"{where}.{'.'.join(path)}"
    message = _json_message(_get_str(record, path, where, required=True), inner)
    if message.get("Type") == "Notification" and "Message" in message:
        inner += ".Message"  # SNS -> SQS without raw message delivery: the SNS envelope
        message = _json_message(_get_str(message, ("Message",), inner, required=True), inner)
    return _parse(message, f"{inner}.")


def _json_message(text: str, where: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where} is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise ValueError(f"{where} must hold a JSON object, got {_type_name(message)}")
    return message


def _without_prefix(message: str, where: str) -> str:
    """``Records[0]: missing s3`` -> ``missing s3`` (the record is named once, by its where)."""
    head = f"{where}: "
    return message[len(head) :] if message.startswith(head) else message


def _eventbridge(event: Mapping[str, Any], prefix: str = "") -> list[Item]:
    source = event.get("source")
    detail_type = event.get("detail-type")
    if source != "aws.s3":
        raise EventError(f"EventBridge event from {source!r}: only aws.s3 events are handled")
    if detail_type != "Object Created":
        where = prefix.rstrip(".") or "event"
        return [Skipped(where, f"EventBridge {detail_type!r} event is not an upload")]
    where = f"{prefix}detail"
    try:
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise ValueError(f"detail must be an object, got {_type_name(detail)}")
        bucket = _get_str(detail, ("bucket", "name"), where, required=True)
        key = _get_str(detail, ("object", "key"), where, required=True)
        token = naming.object_token(
            _get_str(detail, ("object", "version-id"), where, required=False),
            _get_str(detail, ("object", "etag"), where, required=False),
            _get_str(detail, ("object", "sequencer"), where, required=False),
        )
    except ValueError as exc:
        raise EventError(str(exc)) from None
    return [ObjectRef(bucket, key, token, "eventbridge", where)]


def _direct(event: Mapping[str, Any]) -> list[Item]:
    unknown = sorted(str(k) for k in event if k not in DIRECT_FIELDS)
    if unknown:
        raise EventError(
            f"direct request has unknown field(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(DIRECT_FIELDS)}"
        )
    try:
        bucket, key = parse_s3_uri(event["input"], "input")
        output = event.get("output")
        if output is not None:
            parse_s3_uri(output, "output")
        model = event.get("model")
        valid_model = isinstance(model, str) and naming.is_valid_job_name(model)
        if model is not None and not valid_model:
            raise ValueError(
                f"model={model!r} is not a SageMaker model name (1-63 letters, digits and hyphens)"
            )
        for field in ("version", "rerun"):
            value = event.get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{field} must be a string, got {_type_name(value)}")
    except ValueError as exc:
        raise EventError(str(exc)) from None
    token = naming.direct_token(
        version=event.get("version"), model=model, output=output, rerun=event.get("rerun")
    )
    return [ObjectRef(bucket, key, token, "direct", "input", model=model, output=output)]


def parse_event(event: object) -> list[Item]:
    """Every object the event refers to, in order, plus what was skipped or unusable."""
    if not isinstance(event, Mapping):
        raise EventError(f"event must be a JSON object, got {_type_name(event)}")
    return _parse(event, "")


def _parse(event: Mapping[str, Any], prefix: str) -> list[Item]:
    if event.get("Event") == "s3:TestEvent":
        where = prefix.rstrip(".") or "event"
        return [Skipped(where, "S3 test event (sent when the notification is configured)")]
    if "Records" in event:
        return _s3_records(event["Records"], prefix)
    if "detail-type" in event:
        return _eventbridge(event, prefix)
    if "input" in event and not prefix:
        return _direct(event)
    keys = ", ".join(sorted(str(k) for k in event)) or "none"
    raise EventError(
        f"{prefix}unrecognised event: expected an S3 notification ('Records', also inside SQS "
        "or SNS messages), an EventBridge 'Object Created' event ('detail-type') or a direct "
        f"request ({{'input': 's3://bucket/key'}}); got keys: {keys}"
    )


def ignore_reason(ref: ObjectRef, input_prefix: str, input_suffix: str) -> str | None:
    """Why an S3-originated object is not a transform input, or None when it is.

    Direct requests are deliberate and are not filtered (they may name a prefix).
    """
    if ref.source == "direct":
        return None
    if ref.key.endswith("/"):
        return "folder marker"
    if not ref.key.startswith(input_prefix):
        return f"outside the input prefix {input_prefix!r}"
    if input_suffix and not ref.key.endswith(input_suffix):
        return f"does not end with {input_suffix!r}"
    return None
