"""A local Batch Transform job: model.tar.gz + input directory -> ``.out`` files.

The order is SageMaker's, with every check that needs no server done before the
server starts (so a typo costs no start-up time): find the input files, unpack
the archive into a model directory, check the output directory, start ``serve``
with the job's environment, wait for ``/ping``, read ``/execution-parameters``,
resolve the job parameters against it, run the transform, and stop the server
whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.artifact import unpack_model_archive
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
    log_path: Path | None = None  # None: a temporary log, kept only if serve fails to start
    command: tuple[str, ...] | None = None  # None: this environment's `serve`
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT


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
) -> LocalTransformResult:
    """Run one local Batch Transform job; UserError for anything the user must fix.

    ``model_dir`` keeps the unpacked model (default: a temporary directory removed
    afterwards). A run in which files failed returns normally with
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
    try:
        with contextlib.ExitStack() as stack:
            if model_dir is None:
                temp = stack.enter_context(tempfile.TemporaryDirectory(prefix="model-"))
                model_dir = Path(temp)
            unpack_model_archive(model_archive, model_dir)
            prepare_output_dir(output_dir)
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
            transform = run_batch_transform(
                process.host, process.port, files, output_dir, parameters, on_progress=progress
            )
    except ServerError:
        keep_log = True  # the message names the log: it explains why serve did not start
        raise
    finally:
        if temporary_log and (not keep_log or _is_empty(log_path)):
            log_path.unlink(missing_ok=True)
    return LocalTransformResult(
        transform=transform,
        startup_seconds=process.startup_seconds,
        execution_parameters=offered,
        server_log=None if temporary_log else log_path,
        input_files=files,
    )


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
