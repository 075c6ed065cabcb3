"""Run a Batch Transform over a directory against a model server that is already up.

What SageMaker does, reproduced on one machine (../shared/notes/sagemaker-contract.md):
every file under the input path (recursively) is split into mini-batches
(``records``), ``MaxConcurrentTransforms`` requests are in flight at any time
(one thread and one keep-alive connection each), answers are assembled in input
order into ``<relative path>.out`` (``assembly``), and a file whose request keeps
failing gets no ``.out`` while the other files still finish. The run then ends
``Failed`` with a reason naming each failed file and the record.

To name the record when the server rejects a MultiRecord request (4xx), the runner
narrows the request down by bisection: a few extra requests, sent only on failure,
until one record is left (SageMaker itself only reports the failed request).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from model.batch.assembly import AtomicOutput, OutputProcessor
from model.batch.client import InvocationClient, InvocationError
from model.batch.params import ResolvedParameters
from model.batch.records import Batch, RecordError, iter_batches
from model.errors import UserError

ProgressCallback = Callable[[int, int], None]  # (records, input bytes) per finished batch

_BISECTABLE_STATUSES = (400, 422)  # "this input is wrong"; 413/415/406 concern the request
_MAX_BISECTION_REQUESTS = 64


class InputError(UserError):
    """The input path is missing or holds nothing to transform."""


class OutputError(UserError):
    """The output directory cannot be used."""


@dataclass(frozen=True)
class InputFile:
    """One input object: its path and its name relative to the input root."""

    path: Path
    relative: str
    size: int

    @property
    def output_name(self) -> str:
        """``<relative path>.out``, as Batch Transform names output objects."""
        return f"{self.relative}.out"


def discover_inputs(input_path: Path, output_dir: Path | None = None) -> list[InputFile]:
    """Every file under ``input_path`` (or the file itself), sorted by relative path.

    Files inside ``output_dir`` are skipped when it lies within the input tree, so a
    second run never reads the first run's ``.out`` files as input.
    """
    if not input_path.exists():
        raise InputError(f"input {input_path} does not exist; pass a directory of input files")
    if input_path.is_file():
        return [InputFile(input_path, input_path.name, input_path.stat().st_size)]
    if not input_path.is_dir():
        raise InputError(f"input {input_path} is neither a file nor a directory")
    root = input_path.resolve()
    skip = output_dir.resolve() if output_dir is not None else None
    if skip == root:
        raise InputError(
            f"the output directory is the input directory ({input_path}); the .out files "
            "would become input of the next run. Choose another output directory"
        )
    found: list[InputFile] = []
    for directory, subdirs, files in os.walk(root, onerror=_raise_walk_error):
        here = Path(directory)
        if skip is not None:
            subdirs[:] = [d for d in subdirs if here / d != skip]
        subdirs.sort()
        for name in files:
            path = here / name
            if not path.is_file():
                continue  # broken symlink, socket, ...
            found.append(InputFile(path, path.relative_to(root).as_posix(), path.stat().st_size))
    if not found:
        raise InputError(f"input directory {input_path} holds no files to transform")
    found.sort(key=lambda f: f.relative)
    return found


def _raise_walk_error(error: OSError) -> None:
    raise InputError(f"cannot read input directory {error.filename}: {error.strerror}")


def prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove it is writable, before any work starts."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=output_dir)
        os.close(fd)
        Path(probe).unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"output directory {output_dir} is not writable ({reason}); choose another one"
        ) from None


@dataclass
class FileResult:
    """How one input file ended."""

    relative: str
    output_path: Path | None  # None when the file failed
    records: int
    requests: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the ``.out`` was written."""
        return self.error is None


@dataclass
class TransformResult:
    """The whole run: per-file results, resolved parameters and timing."""

    files: list[FileResult]
    parameters: ResolvedParameters
    seconds: float
    input_bytes: int

    @property
    def records(self) -> int:
        """Records transformed into ``.out`` files."""
        return sum(f.records for f in self.files if f.ok)

    @property
    def failed(self) -> list[FileResult]:
        """The files without a ``.out``."""
        return [f for f in self.files if not f.ok]

    @property
    def status(self) -> str:
        """``Completed`` or ``Failed``, as DescribeTransformJob says it."""
        return "Failed" if self.failed else "Completed"

    @property
    def failure_reason(self) -> str | None:
        """One line naming every failed file and its record, or None."""
        failed = self.failed
        if not failed:
            return None
        head = f"{len(failed)} of {len(self.files)} input files failed"
        return head + ": " + "; ".join(f.error or f.relative for f in failed)


class _FileJob:
    """Book-keeping for one input file while its batches are in flight."""

    def __init__(
        self,
        source: InputFile,
        output: AtomicOutput | None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.source = source
        self.output = output
        self._on_progress = on_progress
        self._reported_bytes = 0
        self._lock = threading.Lock()
        self._submitted = 0
        self._done = 0
        self._closed = False
        self._finished = False
        self.records = 0
        self.requests = 0
        self.error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.error is None:
                self.error = f"{self.source.relative}: {reason}"

    def submitted(self) -> None:
        with self._lock:
            self._submitted += 1

    def sent(self, requests: int) -> None:
        with self._lock:
            self.requests += requests

    def deliver(self, batch: Batch, data: bytes) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.records += batch.records
        if self.output is not None:
            self.output.put(batch.index, data)
        self._progress(batch.records, batch.input_bytes)

    def _progress(self, records: int, input_bytes: int) -> None:
        if self._on_progress is None:
            return
        with self._lock:
            self._reported_bytes += input_bytes
        self._on_progress(records, input_bytes)

    def batch_done(self) -> None:
        with self._lock:
            self._done += 1
        self._finish_if_complete()

    def close(self) -> None:
        """No more batches will be submitted."""
        with self._lock:
            self._closed = True
        self._finish_if_complete()

    def abandon(self) -> None:
        """Interrupted: drop the temp file whatever state the file is in."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self.error is None:
                self.error = f"{self.source.relative}: interrupted"
        if self.output is not None:
            self.output.discard()

    def _finish_if_complete(self) -> None:
        with self._lock:
            if self._finished or not self._closed or self._done < self._submitted:
                return
            self._finished = True
            failed = self.error is not None
            batches = self._submitted
            remainder = self.source.size - self._reported_bytes
        # Whatever the batches did not account for (final newlines, a failed file's
        # rest) completes the file on the progress bar.
        if remainder > 0:
            self._progress(0, remainder)
        output = self.output
        if output is None:
            return
        if failed:
            output.discard()
            return
        try:
            output.commit(batches)
        except OSError as error:
            self.fail(f"cannot write {output.target}: {error.strerror or error}")
            output.discard()

    def result(self) -> FileResult:
        if self.error is not None:
            return FileResult(self.source.relative, None, 0, self.requests, self.error)
        target = self.output.target if self.output is not None else None
        return FileResult(self.source.relative, target, self.records, self.requests)


def run_batch_transform(
    host: str,
    port: int,
    inputs: Iterable[InputFile],
    output_dir: Path,
    parameters: ResolvedParameters,
    *,
    on_progress: ProgressCallback | None = None,
) -> TransformResult:
    """Transform every input file into ``output_dir`` against the server at host:port.

    Returns normally also when files failed (``result.status == "Failed"``); raises
    only for Ctrl-C, after removing every temporary file.
    """
    job_parameters = parameters.job
    files = list(inputs)
    processor = OutputProcessor(parameters)
    limit = parameters.max_payload_bytes
    row_filter = job_parameters.input_filter
    concurrency = parameters.MaxConcurrentTransforms
    work: queue.Queue[tuple[_FileJob, Batch] | None] = queue.Queue(maxsize=2 * concurrency)
    stop = threading.Event()
    clients = [
        InvocationClient(
            host,
            port,
            content_type=job_parameters.ContentType,
            accept=job_parameters.Accept,
            timeout=job_parameters.InvocationsTimeoutInSeconds,
            max_retries=job_parameters.InvocationsMaxRetries,
        )
        for _ in range(concurrency)
    ]

    def worker(client: InvocationClient) -> None:
        while True:
            item = work.get()
            if item is None:
                client.close()
                return
            job, batch = item
            try:
                if job.failed or stop.is_set():
                    continue
                sent_before = client.requests_sent
                try:
                    response = client.invoke(batch.payload)
                except InvocationError as failure:
                    job.fail(_explain_failure(client, batch, failure))
                    continue
                finally:
                    job.sent(client.requests_sent - sent_before)
                job.deliver(batch, processor.process(batch, response))
            except RecordError as error:
                job.fail(str(error))
            except Exception as error:  # one file's bug must not stop the others
                job.fail(f"{batch.describe_lines()}: unexpected error: {error!r}")
            finally:
                job.batch_done()

    threads = [
        threading.Thread(target=worker, args=(client,), name=f"transform-{n}", daemon=True)
        for n, client in enumerate(clients)
    ]
    jobs: list[_FileJob] = []
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        for source in files:
            job = _open_job(source, output_dir, on_progress)
            jobs.append(job)
            if job.failed:
                job.close()
                continue
            try:
                with source.path.open("rb") as stream:
                    for batch in iter_batches(
                        stream,
                        limit=limit,
                        split_type=job_parameters.SplitType,
                        batch_strategy=parameters.BatchStrategy,
                        row_filter=row_filter,
                    ):
                        if job.failed:
                            break
                        job.submitted()
                        _put(work, (job, batch), stop)
            except RecordError as error:
                job.fail(str(error))
            except OSError as error:
                job.fail(f"cannot read the file ({error.strerror or error})")
            finally:
                job.close()
        for _ in threads:
            _put(work, None, stop)
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except BaseException:
        stop.set()
        for client in clients:
            client.abort()
        for job in jobs:
            job.abandon()
        _release(work, len(threads))
        raise
    seconds = time.perf_counter() - started
    results = [job.result() for job in jobs]
    return TransformResult(
        files=results,
        parameters=parameters,
        seconds=seconds,
        input_bytes=sum(f.size for f in files),
    )


def _open_job(
    source: InputFile, output_dir: Path, on_progress: ProgressCallback | None
) -> _FileJob:
    target = output_dir / source.output_name
    try:
        return _FileJob(source, AtomicOutput(target), on_progress)
    except OSError as error:
        job = _FileJob(source, None, on_progress)
        job.fail(f"cannot create {target}: {error.strerror or error}")
        return job


def _put(work: queue.Queue, item: object, stop: threading.Event) -> None:
    """``work.put`` that stays responsive to Ctrl-C while the queue is full."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            work.put(item, timeout=0.5)
            return


def _release(work: queue.Queue, threads: int) -> None:
    """Empty the queue and hand every worker its stop sentinel (never blocks)."""
    with contextlib.suppress(queue.Empty):
        while True:
            work.get_nowait()
    for _ in range(threads):
        with contextlib.suppress(queue.Full):
            work.put_nowait(None)


def _explain_failure(client: InvocationClient, batch: Batch, failure: InvocationError) -> str:
    """The reason a file failed, naming the record (bisecting a rejected batch)."""
    if batch.records == 1:
        return (
            f"line {batch.first_line}: {_relabel(failure, batch.first_line).describe('the record')}"
        )
    if failure.status not in _BISECTABLE_STATUSES:
        return f"{batch.describe_lines()}: {failure.describe()}"
    records = batch.payload.split(b"\n")
    low, high = 0, len(records)  # the rejected range
    last = failure
    probes = 0
    while high - low > 1 and probes < _MAX_BISECTION_REQUESTS:
        middle = (low + high) // 2
        narrowed = False
        for start, stop in ((low, middle), (middle, high)):
            probes += 1
            try:
                client.invoke(b"\n".join(records[start:stop]))
            except InvocationError as probe:
                if probe.status not in _BISECTABLE_STATUSES:
                    return f"{batch.describe_lines()}: {failure.describe()}"
                low, high, last, narrowed = start, stop, probe, True
                break
        if not narrowed:
            break  # each half passes alone: the batch fails only as a whole
    if high - low == 1:
        line = batch.first_line + low
        return f"line {line}: {_relabel(last, line).describe('the record')}"
    return f"{batch.describe_lines()}: {failure.describe()}"


_FIRST_ROW = re.compile(r"^(HTTP \d+: )(line|row) 1\b")


def _relabel(failure: InvocationError, line: int) -> InvocationError:
    """A one-record request's "line 1" in the server's message is file line ``line``."""
    reason = _FIRST_ROW.sub(lambda m: f"{m.group(1)}{m.group(2)} {line}", failure.reason)
    return InvocationError(reason, status=failure.status, attempts=failure.attempts)
