"""A local Batch Transform job: model.tar.gz + input directory -> ``.out`` files.

The order is SageMaker's, with every check that needs no server done before the
server starts (so a typo costs no start-up time): find the input files, unpack
the archive into a model directory, check the output directory, start ``serve``
with the job's environment, wait for ``/ping``, read ``/execution-parameters``,
resolve the job parameters against it, run the transform, and stop the server
whatever happened. While it runs, a ``ServerWatch`` stops the run at once if the
server dies or hangs.

The server's log is a temporary file unless ``ServerOptions.log_path`` names one;
it is kept (and named in the result) whenever the run failed, since it holds the
only traceback of a model error. ``--model`` may also be a bare ``model.joblib``
(or a pickle): it is used as the archive's only member would be.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.artifact import MODEL_FILE, MODEL_SUFFIXES, ArtifactError, unpack_model_archive
from model.batch.health import DEFAULT_HANG_SECONDS, ServerWatch
from model.batch.params import ResolvedParameters, TransformJobParameters, resolve
from model.batch.runner import (
    InputFile,
    ProgressCallback,
    TransformResult,
    discover_inputs,
    prepare_output_dir,
    run_batch_transform,
)
from model.batch.server import DEFAULT_STARTUP_TIMEOUT, ServeProcess, ServerError
from model.report import RunSummary, Score


@dataclass(frozen=True)
class ServerOptions:
    """How to run ``serve`` locally (none of this exists on SageMaker's side)."""

    port: int | None = None  # None: a free loopback port
    workers: int | None = None  # None: serve's default, one per CPU
    log_path: Path | None = None  # None: a temporary log, kept only if the run failed
    command: tuple[str, ...] | None = None  # None: this environment's `serve`
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    hang_seconds: float = DEFAULT_HANG_SECONDS  # no sign of life this long: hung


@dataclass
class LocalTransformResult:
    """The transform result plus what the local server did."""

    transform: TransformResult
    startup_seconds: float
    execution_parameters: dict[str, object] | None
    server_log: Path | None
    input_files: list[InputFile]


# Called once the server is ready and the inputs are known: (files, resolved
# parameters) -> per-batch progress callback (or None).
StartHook = Callable[[list[InputFile], ResolvedParameters], ProgressCallback | None]


def run_local_transform(
    model_archive: Path,
    input_path: Path,
    output_dir: Path,
    job: TransformJobParameters,
    *,
    server: ServerOptions | None = None,
    model_dir: Path | None = None,
    on_start: StartHook | None = None,
    on_launch: Callable[[], None] | None = None,
) -> LocalTransformResult:
    """Run one local Batch Transform job; UserError for anything the user must fix.

    ``model_dir`` keeps the unpacked model (default: a temporary directory removed
    afterwards). ``on_launch`` is called once every check passed, as ``serve`` starts.
    A run in which files failed returns normally with
    ``result.transform.status == "Failed"``.
    """
    options = server or ServerOptions()
    files = discover_inputs(input_path, output_dir)
    log_path = options.log_path
    temporary_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="serve-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    keep_log = False
    temporary_model: Path | None = None
    try:
        with contextlib.ExitStack() as stack:
            if model_dir is None:
                temp = stack.enter_context(tempfile.TemporaryDirectory(prefix="model-"))
                model_dir = temporary_model = Path(temp)
            unpack_model(model_archive, model_dir)
            prepare_output_dir(output_dir)
            if on_launch is not None:
                on_launch()
            process = stack.enter_context(
                ServeProcess(
                    model_dir,
                    port=options.port,
                    workers=options.workers,
                    environment=job.server_environment(),
                    log_path=log_path,
                    command=options.command,
                    startup_timeout=options.startup_timeout,
                )
            )
            offered = process.execution_parameters()
            parameters = resolve(job, offered)
            progress = on_start(files, parameters) if on_start is not None else None
            watch = ServerWatch(process, hang_seconds=options.hang_seconds)
            transform = run_batch_transform(
                process.host,
                process.port,
                files,
                output_dir,
                parameters,
                on_progress=progress,
                watch=watch,
            )
            keep_log = transform.status != "Completed"  # the model's tracebacks are there
    except ServerError as error:
        keep_log = True  # the message names the log: it explains what happened to serve
        message = str(error)
        if temporary_model is not None:  # name what the user passed, not a deleted copy
            message = message.replace(str(temporary_model), str(model_archive))
        if "full log:" not in message and not _is_empty(log_path):
            message += f" (full log: {log_path})"
        raise type(error)(message) from None
    finally:
        if temporary_log and (not keep_log or _is_empty(log_path)):
            log_path.unlink(missing_ok=True)
    return LocalTransformResult(
        transform=transform,
        startup_seconds=process.startup_seconds,
        execution_parameters=offered,
        server_log=log_path if log_path.exists() else None,
        input_files=files,
    )


def unpack_model(model: Path, model_dir: Path) -> None:
    """Unpack ``model.tar.gz`` into ``model_dir``; a bare model file is copied in as
    ``model.joblib`` (what packing it into an archive would give serve)."""
    if model.is_file() and model.suffix.lower() in MODEL_SUFFIXES and not _is_tar(model):
        model_dir.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(model, model_dir / MODEL_FILE)
        except OSError as error:
            raise ArtifactError(f"cannot read the model {model}: {error.strerror}") from None
        return
    unpack_model_archive(model, model_dir)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def local_summary(
    result: LocalTransformResult,
    *,
    score: Score | None = None,
    training_metrics: dict[str, object] | None = None,
    artifacts: dict[str, str] | None = None,
) -> RunSummary:
    """The printable summary of a local run (``model.report.format_summary``)."""
    transform = result.transform
    return RunSummary(
        mode="local",
        status=transform.status,
        rows=transform.records,
        files=len(transform.files),
        transform_seconds=transform.seconds,
        parameters=f"{transform.parameters.job.ContentType}, {transform.parameters.describe()}",
        score=score,
        training_metrics=dict(training_metrics or {}),
        startup_seconds=result.startup_seconds,
        failure_reason=transform.failure_reason,
        failed_files=len(transform.failed),
        artifacts=dict(artifacts or {}),
    )
