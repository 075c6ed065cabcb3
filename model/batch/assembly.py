"""Turn answers into ``.out`` content (AssembleWith, JoinSource, OutputFilter) and write it.

Assembly: with AssembleWith Line every answer ends with a newline, so the answers
of a file, concatenated in batch order, hold one line per record. JoinSource=Input
puts the original input row in front of each output row ("the joined data has the
original input data followed by the transformed data"), and OutputFilter then picks
columns of the joined row (AWS guide, "Associate Prediction Results with Input
Records").

Writing: ``AtomicOutput`` takes answers in whatever order threads finish them, writes
them to a temporary file next to the target in batch order (so memory stays small)
and publishes the file with ``os.replace`` only when every batch arrived. A reader
therefore sees either no ``.out`` or a complete one; a failed file leaves nothing.

Temporary files are named ``.<name>.out.<pid>.<random>.tmp``: the runner removes its
own on every exit path, and a later run removes those of runs that no longer exist
(``remove_stale_temp_files``: a SIGKILL leaves them, nothing else can).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tempfile
import threading
from pathlib import Path

from model.batch.client import Response
from model.batch.jsonpath import FilterError
from model.batch.params import LINE_MEDIA_TYPES, ResolvedParameters, media_type
from model.batch.records import Batch, RecordError, first_blank_line, format_csv_row


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, not per file
    # from worker threads (mkstemp files are 0600; published files get the usual mode).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()

# ".<name>.out.<pid>.<mkstemp letters>.tmp"; the pid-less form is an older runner's.
_TEMP_NAME = re.compile(r"^\..+\.out\.(?:(\d+)\.)?[a-z0-9_]{6,}\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def temp_files(output_dir: Path, *, pid: int | None = None) -> list[Path]:
    """Runner temporary files under ``output_dir`` (only process ``pid``'s when given)."""
    found = []
    for directory, _, files in os.walk(output_dir):
        for name in files:
            match = _TEMP_NAME.match(name)
            if match and (pid is None or match.group(1) == str(pid)):
                found.append(Path(directory, name))
    return found


def remove_stale_temp_files(output_dir: Path) -> list[Path]:
    """Remove the temporary files of runs that are gone (killed); return them."""
    removed = []
    for path in temp_files(output_dir):
        owner = _TEMP_NAME.match(path.name).group(1)  # type: ignore[union-attr]
        if owner is not None and int(owner) != os.getpid() and _pid_alive(int(owner)):
            continue  # another run writing into the same directory right now
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def remove_own_temp_files(output_dir: Path) -> None:
    """Last sweep on the way out: no temporary file of this process stays behind."""
    for path in temp_files(output_dir, pid=os.getpid()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def count_lines(body: bytes) -> int:
    if not body:
        return 0
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1)


def _csv_fields(row: bytes) -> list[str]:
    text = row.decode("utf-8")
    return text.split(",") if '"' not in text else next(csv.reader([text]))


class OutputProcessor:
    """Checks and shapes each answer according to the job's data-processing settings."""

    def __init__(self, parameters: ResolvedParameters) -> None:
        job = parameters.job
        self._line_assembly = job.AssembleWith == "Line"
        self._default_line_check = parameters.checks_line_count
        self._split_lines = job.SplitType == "Line"
        self._join = job.JoinSource == "Input"
        self._output_filter = job.output_filter
        self._reshape = self._join or not self._output_filter.is_identity

    def process(self, batch: Batch, response: Response) -> bytes:
        """The bytes this batch contributes to its ``.out``; RecordError if unusable."""
        body = response.body
        if self._checks_lines(response):
            lines = count_lines(body)
            if lines != batch.records:
                blank = first_blank_line(batch.payload, batch.first_line)
                hint = f" (line {blank} is empty: remove blank lines)" if blank else ""
                raise RecordError(
                    blank or batch.first_line,
                    f"the model server answered {lines} lines for the {batch.records} records "
                    f"of {batch.describe_lines()}; each record needs exactly one output line"
                    + hint,
                )
        if self._reshape:
            return self._reshape_rows(batch, body)
        if self._line_assembly and body and not body.endswith(b"\n"):
            return body + b"\n"
        return body

    def _checks_lines(self, response: Response) -> bool:
        if not self._split_lines:
            return False
        if self._reshape:
            return True  # joining/filtering needs one output row per record
        answered = media_type(response.content_type)
        if answered is None:
            return self._default_line_check
        return answered in LINE_MEDIA_TYPES

    def _reshape_rows(self, batch: Batch, body: bytes) -> bytes:
        outputs = body.split(b"\n")
        if outputs and outputs[-1] == b"":
            outputs.pop()
        inputs = (batch.source if batch.source is not None else batch.payload).split(b"\n")
        rows = []
        for offset, (source, output) in enumerate(zip(inputs, outputs, strict=True)):
            row = output.rstrip(b"\r")
            if self._join:
                row = source.rstrip(b"\r") + b"," + row
            if not self._output_filter.is_identity:
                try:
                    row = format_csv_row(self._output_filter.apply(_csv_fields(row)))
                except FilterError as error:
                    raise RecordError(batch.first_line + offset, f"OutputFilter: {error}") from None
            rows.append(row)
        rows.append(b"")
        return b"\n".join(rows)


class AtomicOutput:
    """One ``.out`` file, written in batch order and published atomically."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pending: dict[int, bytes] = {}
        self._next = 0
        self._created_dirs: list[Path] = []
        self._closed = False
        missing = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        target.parent.mkdir(parents=True, exist_ok=True)
        self._created_dirs = missing  # deepest first, for clean-up
        fd, temp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")

    def put(self, index: int, data: bytes) -> None:
        """Accept batch ``index``'s bytes; write every batch that is now in order."""
        with self._lock:
            if self._closed:
                return
            self._pending[index] = data
            while self._next in self._pending:
                self._file.write(self._pending.pop(self._next))
                self._next += 1

    def commit(self, batches: int) -> None:
        """Publish the file once all ``batches`` arrived (``os.replace``).

        No fsync: the rename makes the file appear complete or not at all to every
        reader and on any interruption of this process; surviving a power cut is
        not worth a disk flush per file on the transform's critical path.
        """
        with self._lock:
            if self._closed:
                return
            if self._next != batches or self._pending:
                raise RuntimeError(f"{self.target}: {self._next} of {batches} batches written")
            self._closed = True
            try:
                self._file.close()
                self._temp.chmod(0o666 & ~_UMASK)
                self._temp.replace(self.target)
            except BaseException:
                self._remove_temp()
                raise

    def discard(self) -> None:
        """Drop everything: no temp file, no ``.out`` (a stale one from an earlier run
        is removed too, so a failed file never has one), no directories we created."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            self._remove_temp()
            with contextlib.suppress(FileNotFoundError):
                self.target.unlink()
            for directory in self._created_dirs:
                try:
                    directory.rmdir()
                except OSError:
                    break

    def _remove_temp(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()
