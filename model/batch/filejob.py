"""One input file's progress through a run, and how each file and the run ended.

``FileJob`` counts a file's batches as they are submitted and answered, hands the
answers to its ``AtomicOutput`` in order and publishes the ``.out`` only when every
batch arrived and none failed; a failed or interrupted file leaves nothing.
``FileResult`` / ``TransformResult`` are what a run returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.batch.assembly import AtomicOutput, count_lines
from model.batch.inputs import InputFile
from model.batch.params import ResolvedParameters
from model.batch.records import Batch
from model.storage import free_bytes, human_bytes, is_disk_full

ProgressCallback = Callable[[int, int], None]  # (records, input bytes) per finished batch


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


class FileJob:
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
        self.finished_ok = False  # the .out was published

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
        # A whole binary file (Parquet, NPY) has no lines to count: its answer's do.
        records = batch.records if batch.records or not data else count_lines(data)
        with self._lock:
            if self.error is not None:
                return
            self.records += records
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
            self.fail(write_failure(self, error))
            output.discard()
        except RuntimeError as error:  # a batch went missing: never publish a short file
            self.fail(f"internal error: {error}")
            output.discard()
        else:
            self.finished_ok = True

    def result(self) -> FileResult:
        if self.error is not None:
            return FileResult(self.source.relative, None, 0, self.requests, self.error)
        target = self.output.target if self.output is not None else None
        return FileResult(self.source.relative, target, self.records, self.requests)


def write_failure(job: FileJob, error: OSError) -> str:
    target = job.output.target if job.output is not None else job.source.relative
    directory = Path(target).parent
    if is_disk_full(error):
        free = free_bytes(directory)
        left = f"{human_bytes(free)} free, " if free is not None else ""
        return (
            f"no space left on device in {directory} ({left}writing {Path(target).name}); "
            "free some space or choose another output directory"
        )
    return f"cannot write {target}: {error.strerror or error}"
