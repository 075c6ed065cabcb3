"""Start a SageMaker Batch Transform job and follow it to the end.

Both go through the SageMaker SDK v3 resources API (``sagemaker.core.resources``):
``TransformJob.create`` starts the job and ``TransformJob.wait`` follows it, showing
a live panel (status, elapsed time) on a terminal and, with ``logs=True``, the job's
CloudWatch log lines. Around ``wait`` this module adds what a command-line user
needs:

- status changes (and, when the output is not a terminal, a line every minute) with
  the time since the job was created, printed so they stay in the scrollback/CI log;
- the SDK's log lines, which it emits through ``logging``, shown as plain lines;
- a failed job's FailureReason and its last CloudWatch log lines;
- Ctrl-C: ask whether to stop the job (``StopTransformJob``) or leave it running, and
  say how to check on it later. SIGTERM (``model.console.Terminated``) never asks:
  it leaves the job running.
"""

from __future__ import annotations

import collections
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lambda_handler.instance_storage import volume_kms_key
from model.batch.params import TransformJobParameters
from model.cloud.aws import AwsContext
from model.cloud.ledger import Ledger
from model.console import Terminated
from model.errors import UserError

LOG_GROUP = "/aws/sagemaker/TransformJobs"  # where Batch Transform writes (AWS docs)
TERMINAL = ("Completed", "Failed", "Stopped")
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
HEARTBEAT_SECONDS = 60.0
LAST_LOG_LINES = 20

Say = Callable[[str], None]
Ask = Callable[[str], str]


class JobError(UserError):
    """The job could not be started or followed."""


class JobInterruptedError(Exception):
    """Ctrl-C / SIGTERM while following; the message says what happened to the jobs."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class JobSpec:
    """Everything CreateTransformJob needs for one run."""

    name: str
    model_name: str
    input_uri: str
    output_uri: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    parameters: TransformJobParameters = field(default_factory=TransformJobParameters)
    kms_key_id: str | None = None  # the stack's key: output, and volume where allowed
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """How a job ended."""

    name: str
    status: str
    failure_reason: str | None
    seconds: float  # TransformEndTime - TransformStartTime (what was billed)
    output_uri: str
    model_name: str | None = None


def _aws_message(error: Exception) -> str:
    info = (getattr(error, "response", None) or {}).get("Error", {})
    if info:
        return f"{info.get('Code')}: {info.get('Message')}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def check_resources(instance_type: str, instance_count: int) -> None:
    """Reject what CreateTransformJob would reject, before anything is created."""
    if not instance_type.startswith("ml.") or len(instance_type.split(".")) != 3:
        raise JobError(
            f"--instance-type {instance_type!r} is not a SageMaker instance type "
            f"(like {DEFAULT_INSTANCE_TYPE})"
        )
    if instance_count < 1:
        raise JobError(f"--instance-count must be at least 1, got {instance_count}")


def create_request(spec: JobSpec) -> dict[str, Any]:
    """The keyword arguments of ``TransformJob.create`` (SDK shapes) for ``spec``.

    MultiRecord is the default strategy with SplitType Line (SageMaker's own default
    is SingleRecord, one line per request, which is far slower for CSV). Payload size
    and concurrency are set only when given: unset, SageMaker asks the container's
    /execution-parameters, exactly as the local runner does. The stack's key encrypts
    the output and, except on instance types with local storage (SageMaker refuses a
    key there and encrypts them in hardware), the volume, as the Lambda's jobs do.
    """
    from sagemaker.core.shapes import (
        DataProcessing,
        ModelClientConfig,
        TransformDataSource,
        TransformInput,
        TransformOutput,
        TransformResources,
        TransformS3DataSource,
    )

    p = spec.parameters
    volume_key = volume_kms_key(spec.instance_type, spec.kms_key_id)
    request: dict[str, Any] = {
        "transform_job_name": spec.name,
        "model_name": spec.model_name,
        "transform_input": TransformInput(
            data_source=TransformDataSource(
                s3_data_source=TransformS3DataSource(s3_data_type="S3Prefix", s3_uri=spec.input_uri)
            ),
            content_type=p.ContentType,
            split_type=p.SplitType,
            compression_type="None",
        ),
        "transform_output": TransformOutput(
            s3_output_path=spec.output_uri,
            assemble_with=p.AssembleWith,
            **({"accept": p.Accept} if p.Accept else {}),
            **({"kms_key_id": spec.kms_key_id} if spec.kms_key_id else {}),
        ),
        "transform_resources": TransformResources(
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            **({"volume_kms_key_id": volume_key} if volume_key else {}),
        ),
        "model_client_config": ModelClientConfig(
            invocations_timeout_in_seconds=p.InvocationsTimeoutInSeconds,
            invocations_max_retries=p.InvocationsMaxRetries,
        ),
        # Plain dicts: ``sagemaker.core.resources`` defines a resource class named Tag
        # that shadows the Tag shape in these signatures, so neither class validates
        # for every resource; a dict does.
        "tags": [{"key": key, "value": value} for key, value in spec.tags.items()],
    }
    if p.SplitType == "Line":
        request["batch_strategy"] = p.BatchStrategy or "MultiRecord"
    if p.MaxPayloadInMB is not None:
        request["max_payload_in_mb"] = p.MaxPayloadInMB
    if p.MaxConcurrentTransforms is not None:
        request["max_concurrent_transforms"] = p.MaxConcurrentTransforms
    if p.Environment:
        request["environment"] = dict(p.Environment)
    if p.InputFilter or p.OutputFilter or p.JoinSource != "None":
        request["data_processing"] = DataProcessing(
            input_filter=p.InputFilter or "$",
            output_filter=p.OutputFilter or "$",
            join_source=p.JoinSource,
        )
    return request


def describe_settings(spec: JobSpec) -> str:
    """One line for the summary, e.g. ``text/csv, MultiRecord, 1 x ml.m5.large``."""
    p = spec.parameters
    parts = [p.ContentType]
    if p.SplitType == "Line":
        parts.append(p.BatchStrategy or "MultiRecord")
    parts.append(
        f"{p.MaxPayloadInMB} MiB payloads" if p.MaxPayloadInMB else "payload from the container"
    )
    if p.MaxConcurrentTransforms:
        parts.append(f"{p.MaxConcurrentTransforms} in flight")
    parts.append(f"{spec.instance_count} x {spec.instance_type}")
    return ", ".join(parts)


def start_job(context: AwsContext, spec: JobSpec, ledger: Ledger) -> None:
    """CreateTransformJob through ``TransformJob.create``; JobError with SageMaker's reason."""
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.resources import TransformJob

    try:
        TransformJob.create(**create_request(spec), session=context.session, region=context.region)
    except (ClientError, BotoCoreError) as error:
        raise JobError(
            f"starting transform job {spec.name} failed ({_aws_message(error)})"
        ) from None
    record_job(context, ledger, spec.name)


def record_job(context: AwsContext, ledger: Ledger, name: str) -> None:
    """Note a transform job in the ledger (a finished job costs nothing and cannot be deleted)."""
    ledger.add(
        "transform job",
        name,
        f"aws sagemaker stop-transform-job --transform-job-name {name} --region "
        f"{context.region}  # only while it runs; a finished job costs nothing",
    )


@functools.cache
def _watched_job_class() -> type:
    """``TransformJob`` whose ``refresh`` (called by ``wait`` every poll) reports the status."""
    from pydantic import PrivateAttr
    from sagemaker.core.resources import TransformJob

    class WatchedTransformJob(TransformJob):
        _on_refresh: Any = PrivateAttr(default=None)

        def refresh(self) -> Any:
            result = super().refresh()
            if self._on_refresh is not None:
                self._on_refresh(self)
            return result

    return WatchedTransformJob


def _assigned(value: Any) -> Any:
    """SDK fields hold an ``Unassigned`` object when the API left them out."""
    return None if type(value).__name__ == "Unassigned" else value


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _StatusLines:
    """Prints a line per status change (and a heartbeat without a live panel)."""

    def __init__(self, say: Say, *, live: bool, clock: Callable[[], float] = time.monotonic):
        self._say = say
        self._live = live
        self._clock = clock
        self._started = clock()
        self._last_status: str | None = None
        self._last_line = 0.0

    def __call__(self, job: Any) -> None:
        status = str(job.transform_job_status)
        created = _assigned(job.creation_time)
        if isinstance(created, datetime):
            when = created if created.tzinfo else created.replace(tzinfo=UTC)
            elapsed = (datetime.now(UTC) - when).total_seconds()
        else:
            elapsed = self._clock() - self._started
        now = self._clock()
        changed = status != self._last_status
        if changed or (not self._live and now - self._last_line >= HEARTBEAT_SECONDS):
            verb = "" if changed else "still "
            self._say(f"  {job.transform_job_name}: {verb}{status} ({_elapsed(elapsed)} elapsed)")
            self._last_status = status
            self._last_line = now


class _LogLines(logging.Handler):
    """Shows the job log lines ``TransformJob.wait(logs=True)`` emits through logging.

    The SDK logs each CloudWatch event as ``"<stream>:\\n<message>"`` with
    ``extra={"markup": False}``; its other INFO records (its own chatter) are skipped.
    """

    def __init__(self, say: Say) -> None:
        super().__init__(logging.INFO)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "markup", True) is not False:
            return
        stream, _, text = record.getMessage().partition(":\n")
        instance = stream.split("/", 1)[1] if "/" in stream else stream
        for line in text.rstrip("\n").splitlines() or [""]:
            self._say(f"  [{instance}] {line}")


@contextmanager
def _sdk_log_lines(say: Say, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    logger = logging.getLogger("sagemaker.core.resources")
    handler = _LogLines(say)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _point_sdk_logs_at(context: AwsContext) -> None:
    """Make the SDK's log streaming read this run's region with this run's session.

    ``TransformJob.wait(logs=True)`` reads CloudWatch through a process-wide singleton
    built from the *default* session, ignoring the session given to the resource; in
    another region than the user's default it would find no logs.
    """
    from sagemaker.core.utils.logs import CloudWatchLogsClient
    from sagemaker.core.utils.utils import SingletonMeta

    instance = object.__new__(CloudWatchLogsClient)
    instance.client = context.client("logs")
    SingletonMeta._instances[CloudWatchLogsClient] = instance


def last_log_lines(context: AwsContext, name: str, limit: int = LAST_LOG_LINES) -> list[str]:
    """The job's last ``limit`` CloudWatch log lines, all instances merged by time."""
    from botocore.exceptions import BotoCoreError, ClientError

    logs = context.client("logs")
    events: list[tuple[int, str, str]] = []
    try:
        streams = logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/", limit=50
        ).get("logStreams", [])
        for stream in streams:
            stream_name = stream["logStreamName"]
            response = logs.get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream_name, startFromHead=False, limit=limit
            )
            instance = stream_name.split("/", 1)[1] if "/" in stream_name else stream_name
            events.extend(
                (int(e.get("timestamp", 0)), instance, str(e.get("message", "")).rstrip("\n"))
                for e in response.get("events", [])
            )
    except ClientError as error:
        if _aws_message(error).startswith("ResourceNotFoundException"):
            return []
        return [f"(cannot read the job's logs: {_aws_message(error)})"]
    except BotoCoreError as error:
        return [f"(cannot read the job's logs: {error})"]
    events.sort(key=lambda event: event[0])
    return [f"[{instance}] {message}" for _, instance, message in events[-limit:]]


def _ask_default() -> Ask | None:
    return input if sys.stdin.isatty() else None


def _rich_is_live() -> bool:
    from rich import get_console

    return bool(get_console().is_terminal)


class Watcher:
    """Follows jobs with ``TransformJob.wait``; one instance per run."""

    def __init__(
        self,
        context: AwsContext,
        *,
        logs: bool = False,
        poll_seconds: int = 5,
        say: Say | None = None,
        ask: Ask | bool | None = True,
        check_hint: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context = context
        self.clock = clock
        self.logs = logs
        self.poll_seconds = max(1, int(poll_seconds))
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.ask: Ask | None = _ask_default() if ask is True else (ask or None)
        self.check_hint = check_hint

    def _get(self, name: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return _watched_job_class().get(
                transform_job_name=name, session=self.context.session, region=self.context.region
            )
        except (ClientError, BotoCoreError) as error:
            raise JobError(f"cannot find transform job {name} ({_aws_message(error)})") from None

    def follow(self, names: list[str]) -> list[JobResult]:
        """Wait for every job in ``names`` (they run in parallel; waited on in turn)."""
        from botocore.exceptions import BotoCoreError, ClientError
        from sagemaker.core.utils.exceptions import FailedStatusError

        results: list[JobResult] = []
        live = _rich_is_live()
        if self.logs:
            _point_sdk_logs_at(self.context)
        for name in names:
            job = self._get(name)
            job._on_refresh = _StatusLines(self.say, live=live, clock=self.clock)
            try:
                with _sdk_log_lines(self.say, self.logs):
                    job.wait(poll=self.poll_seconds, logs=self.logs)
            except FailedStatusError:
                pass  # the job object holds the status and FailureReason
            except KeyboardInterrupt as interrupt:
                self._interrupted(names[len(results) :], interrupt)
            except (ClientError, BotoCoreError) as error:
                raise JobError(
                    f"lost track of transform job {name} ({_aws_message(error)}); it may still "
                    f"be running. {self.check_hint}"
                ) from None
            results.append(self._result(job))
        return results

    def _result(self, job: Any) -> JobResult:
        start = _assigned(job.transform_start_time)
        end = _assigned(job.transform_end_time)
        seconds = (end - start).total_seconds() if start and end else 0.0
        output = _assigned(job.transform_output)
        reason = _assigned(job.failure_reason)
        return JobResult(
            name=str(job.transform_job_name),
            status=str(job.transform_job_status),
            failure_reason=str(reason) if reason else None,
            seconds=max(0.0, seconds),
            output_uri=str(output.s3_output_path) if output else "",
            model_name=_assigned(job.model_name),
        )

    def _interrupted(self, names: list[str], interrupt: KeyboardInterrupt) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        terminated = isinstance(interrupt, Terminated)
        jobs = ", ".join(names)
        several = len(names) > 1
        stop = False
        if not terminated and self.ask is not None:
            question = (
                f"\ninterrupted: transform job{'s' if several else ''} {jobs} "
                f"{'are' if several else 'is'} still running on SageMaker (billed until "
                f"{'they end' if several else 'it ends'}). Stop {'them' if several else 'it'}? "
                "[y/N] "
            )
            try:
                answer = self.ask(question)
            except (EOFError, KeyboardInterrupt):
                answer = ""
            stop = answer.strip().lower() in ("y", "yes")
        code = 143 if terminated else 130
        if not stop:
            raise JobInterruptedError(
                f"transform job{'s' if several else ''} {jobs} left running on SageMaker. "
                f"{self.check_hint}",
                code,
            )
        failed: list[str] = []
        for name in names:
            try:
                self.context.client("sagemaker").stop_transform_job(TransformJobName=name)
            except ClientError as error:
                message = _aws_message(error)
                if "ValidationException" in message and "status" in message.lower():
                    continue  # finished meanwhile: nothing to stop
                failed.append(f"{name} ({message})")
            except BotoCoreError as error:
                failed.append(f"{name} ({error})")
        if failed:
            raise JobInterruptedError(
                f"stopping failed for {', '.join(failed)}: stop it with `aws sagemaker "
                f"stop-transform-job --transform-job-name NAME --region {self.context.region}`. "
                f"{self.check_hint}",
                code,
            )
        raise JobInterruptedError(
            f"stop requested for transform job{'s' if several else ''} {jobs}: "
            f"{'they end' if several else 'it ends'} as Stopped within minutes. {self.check_hint}",
            code,
        )


def wait_for_creation(
    context: AwsContext,
    names: list[str],
    *,
    timeout: float,
    poll_seconds: float = 2.0,
    say: Say | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Wait until a job exists for each name (the Lambda creates them); returns the missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    sagemaker = context.client("sagemaker")
    pending = collections.OrderedDict((name, None) for name in names)
    deadline = clock() + timeout
    while pending:
        for name in list(pending):
            try:
                sagemaker.describe_transform_job(TransformJobName=name)
            except ClientError as error:
                message = _aws_message(error)
                if "ValidationException" in message or "ResourceNotFound" in message:
                    continue  # not created yet
                raise JobError(f"cannot look up transform job {name} ({message})") from None
            except BotoCoreError as error:
                raise JobError(f"cannot look up transform job {name} ({error})") from None
            del pending[name]
            if say:
                say(f"  the trigger started {name}")
        if not pending or clock() >= deadline:
            break
        sleep(poll_seconds)
    return list(pending)
