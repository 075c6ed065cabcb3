"""Lambda entry point: S3 / EventBridge / direct events in, one transform job per object out.

``handler(event, context)`` returns ``{"started": [...], "existing": [...],
"skipped": [...], "failed": []}``. When any object failed it raises
:class:`TriggerError` after handling all the others (its ``result`` holds the same
lists), because only a failed invocation reaches the function's on-failure
destination (the stack's SQS queue) after Lambda's retries; the objects that
succeeded are safe to retry since job names are deterministic.

boto3 is imported here, at init time, where Lambda gives the import its CPU burst;
the clients themselves are created on first use so importing this module stays
close to ``import boto3`` (see bench/lambda_cold_start.py) and tests can start
moto before any client exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config

from lambda_handler import naming
from lambda_handler.config import ConfigError, Settings
from lambda_handler.events import BadRecord, EventError, ObjectRef, Skipped, ignore_reason
from lambda_handler.events import parse_event as _parse_event
from lambda_handler.jobs import JobError, build_request, start_job
from lambda_handler.logs import JsonLogger
from lambda_handler.model_parameter import ModelLookupError, read_current_model

__all__ = ["TriggerError", "client", "handler", "process", "reset_clients"]

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20
)
_CLIENTS: dict[str, Any] = {}
_MAX_MESSAGE = 2000


class TriggerError(RuntimeError):
    """Some objects got no job; the message lists them and ``result`` has everything."""

    def __init__(self, message: str, result: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(message)
        self.result = result


def client(service: str) -> Any:
    """A boto3 client, created on first use and reused by later invocations."""
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.client(service, config=_CLIENT_CONFIG)
    return _CLIENTS[service]


def reset_clients() -> None:
    """Forget cached clients (tests start a fresh moto backend per test)."""
    _CLIENTS.clear()


def _failure_message(result: dict[str, list[dict[str, Any]]], total: int) -> str:
    failed = result["failed"]
    parts = [f"{f.get('input') or f['where']}: {f['error']}" for f in failed]
    done = len(result["started"]) + len(result["existing"])
    message = f"{len(failed)} of {total} object(s) got no transform job: " + "; ".join(parts)
    if done:
        message += f" ({done} other(s) started or already running)"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def process(
    event: object,
    settings: Settings,
    get_client: Callable[[str], Any] = client,
    log: JsonLogger | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Handle one event with explicit settings and clients (the testable core).

    Raises EventError for an event that cannot be understood (nothing started) and
    TriggerError when some objects failed (the others were handled).
    """
    log = log or JsonLogger()
    items = _parse_event(event)
    result: dict[str, list[dict[str, Any]]] = {
        "started": [],
        "existing": [],
        "skipped": [],
        "failed": [],
    }
    models: dict[str, str | ModelLookupError] = {}

    def current_model() -> str:
        # Read once per invocation, not cached across invocations: a model registered
        # a minute ago must be used by the next upload.
        if "value" not in models:
            try:
                models["value"] = read_current_model(get_client("ssm"), settings.model_parameter)
            except ModelLookupError as exc:
                models["value"] = exc
        value = models["value"]
        if isinstance(value, ModelLookupError):
            raise value
        return value

    for item in items:
        if isinstance(item, BadRecord):
            entry = {"where": item.where, "error": item.error}
            result["failed"].append(entry)
            log.error("bad record", **entry)
            continue
        if isinstance(item, Skipped):
            entry = {"where": item.where, "reason": item.reason}
            if item.uri:
                entry["input"] = item.uri
            result["skipped"].append(entry)
            log.info("skipped", **entry)
            continue
        _handle_object(item, settings, get_client, current_model, result, log)

    total = sum(len(v) for k, v in result.items() if k != "skipped")
    if result["failed"]:
        message = _failure_message(result, total)
        log.error("finished with failures", **result)
        raise TriggerError(message, result)
    log.info("finished", **{k: len(v) for k, v in result.items()})
    return result


def _handle_object(
    ref: ObjectRef,
    settings: Settings,
    get_client: Callable[[str], Any],
    current_model: Callable[[], str],
    result: dict[str, list[dict[str, Any]]],
    log: JsonLogger,
) -> None:
    reason = ignore_reason(ref, settings.input_prefix, settings.input_suffix)
    if reason:
        entry = {"where": ref.where, "input": ref.uri, "reason": reason}
        result["skipped"].append(entry)
        log.info("skipped", **entry)
        return
    try:
        model = ref.model or current_model()
        name = naming.job_name(settings.job_name_prefix, ref.bucket, ref.key, ref.token)
        request = build_request(ref, settings, model, name)
        outcome = start_job(get_client("sagemaker"), request)
    except (JobError, ModelLookupError, ValueError) as exc:
        entry = {"where": ref.where, "input": ref.uri, "error": str(exc)}
    except Exception as exc:  # one object's surprise must not stop the others
        entry = {"where": ref.where, "input": ref.uri, "error": f"{type(exc).__name__}: {exc}"}
    else:
        output = request["TransformOutput"]["S3OutputPath"]
        entry = {"job_name": outcome.job_name, "input": ref.uri, "output": output, "model": model}
        if outcome.created:
            result["started"].append(entry)
            log.info("transform job started", **entry)
        else:
            entry["status"] = outcome.status
            result["existing"].append(entry)
            log.info("transform job already exists (duplicate delivery)", **entry)
        return
    result["failed"].append(entry)
    log.error("no transform job", **entry)


def _settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(environ)


def handler(event: object, context: object) -> dict[str, list[dict[str, Any]]]:
    """AWS Lambda handler (``lambda_handler.handler.handler``)."""
    log = JsonLogger(request_id=getattr(context, "aws_request_id", None))
    try:
        settings = _settings(os.environ)
        return process(event, settings, client, log)
    except (ConfigError, EventError) as exc:
        log.error(str(exc), error_type=type(exc).__name__)
        raise
