"""Split one input file into the requests Batch Transform would send (SplitType Line).

Rules (SageMaker's, see ../shared/notes/sagemaker-contract.md):

- a record is one line; records are never split, reordered or dropped;
- MultiRecord packs as many whole records as fit into MaxPayloadInMB (counted in
  MiB); the records of a request are joined by ``\\n``, so a payload is exactly the
  bytes between the first record's start and the last record's end;
- SingleRecord sends one record per request;
- a batch never spans two files (one generator per file);
- a single record larger than MaxPayloadInMB fails the file;
- SplitType None sends the whole file as one request.

Blank lines: the newline(s) and blank lines ending the file are not records. A
blank line *between* records is a record like any other and is sent, as
SageMaker's line splitter would send it; the server rejects it or answers for it,
and a server that silently skipped it is caught by the line count of its answer
(``assembly``), which then names the blank line.

Two implementations produce identical batches (a property test holds them to it):
the fast path cuts MultiRecord payloads out of large read blocks with ``rfind``
and one ``count`` per payload (no per-line Python work: on a small machine every
millisecond the runner spends is taken from the model server), the per-line path
handles SingleRecord and InputFilter.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from model.batch.jsonpath import FilterError, RowFilter
from model.batch.params import MIB

# Read at least this much at a time on the fast path; the block also always holds
# more than one full payload, so every cut can be decided within it.
_READ_BLOCK = 8 * MIB


class RecordError(Exception):
    """A record that fails its file before it is sent (too large, blank, unfilterable)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Batch:
    """One request: ``payload`` is sent; ``source`` is the original input for JoinSource."""

    index: int  # position of the batch within its file
    first_line: int  # 1-based line number of its first record
    records: int
    payload: bytes
    input_bytes: int  # bytes of the file this batch consumed (for progress)
    source: bytes | None = None  # original lines, when InputFilter changed the payload

    @property
    def last_line(self) -> int:
        """Line number of the batch's last record."""
        return self.first_line + self.records - 1

    def describe_lines(self) -> str:
        """``line 7`` or ``lines 7-912``, for messages (``the whole file`` for a binary one)."""
        if self.records == 0:
            return "the whole file"
        if self.records == 1:
            return f"line {self.first_line}"
        return f"lines {self.first_line}-{self.last_line}"


def _too_large(line: int, limit: int) -> RecordError:
    return RecordError(
        line,
        f"the record is larger than MaxPayloadInMB ({limit // MIB} MiB = {limit:,} bytes); "
        "raise MaxPayloadInMB or split the record",
    )


def _is_blank(record: bytes) -> bool:
    return record in (b"", b"\r")


def first_blank_line(payload: bytes, first_line: int) -> int | None:
    """Line number of the first blank record in a payload (for error messages only)."""
    for offset, record in enumerate(payload.split(b"\n")):
        if _is_blank(record):
            return first_line + offset
    return None


def _trim_end(data: bytes) -> bytes:
    """Drop the final newline and any blank lines at the end of the file."""
    end = len(data)
    while end:
        start = data.rfind(b"\n", 0, end) + 1
        if not _is_blank(data[start:end]):
            return data[:end]
        if start == 0:
            return b""
        end = start - 1
    return b""


def iter_batches_fast(stream: BinaryIO, limit: int) -> Iterator[Batch]:
    """MultiRecord batches cut out of large blocks (no InputFilter)."""
    block = max(_READ_BLOCK, limit + 1)
    buf = b""
    pos = 0
    eof = False
    line = 1
    index = 0
    while True:
        if not eof and len(buf) - pos <= limit:
            chunk = stream.read(block)
            buf = buf[pos:] + chunk
            pos = 0
            # A regular file returns a short read only at its end.
            if len(chunk) < block:
                eof = True
                buf = _trim_end(buf)
            continue
        if pos >= len(buf):
            return
        if eof and len(buf) - pos <= limit:
            end = nxt = len(buf)
        else:
            end = buf.rfind(b"\n", pos, pos + limit + 1)
            if end == -1:
                raise _too_large(line, limit)
            nxt = end + 1
        records = buf.count(b"\n", pos, end) + 1
        yield Batch(index, line, records, buf[pos:end], nxt - pos)
        index += 1
        line += records
        pos = nxt


def _iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """(line number, record without its newline, bytes consumed) for every record.

    Records are split on ``\\n`` only (a ``\\r`` stays part of its record, as it does
    on the fast path). Blank lines are records, except those ending the file.
    """
    blanks: list[tuple[int, bytes, int]] = []
    for number, raw in enumerate(stream, start=1):
        record = raw[:-1] if raw.endswith(b"\n") else raw
        if _is_blank(record):
            blanks.append((number, record, len(raw)))
            continue
        if blanks:
            yield from blanks
            blanks = []
        yield number, record, len(raw)


def _filter_record(record: bytes, row_filter: RowFilter, line: int) -> bytes:
    """Apply an InputFilter to one CSV record (RFC 4180 quoting honoured)."""
    text = record.decode("utf-8").rstrip("\r")
    fields = text.split(",") if '"' not in text else next(csv.reader([text]))
    try:
        selected = row_filter.apply(fields)
    except FilterError as error:
        raise RecordError(line, f"InputFilter: {error}") from None
    return format_csv_row(selected)


def format_csv_row(fields: list[str]) -> bytes:
    """Join fields into one CSV line (quoting only where a field needs it)."""
    if not any(('"' in f or "," in f or "\n" in f) for f in fields):
        return ",".join(fields).encode("utf-8")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue().encode("utf-8")


def iter_batches_by_line(
    stream: BinaryIO,
    limit: int,
    *,
    single_record: bool,
    row_filter: RowFilter | None = None,
) -> Iterator[Batch]:
    """Per-line batching: SingleRecord, and MultiRecord with an InputFilter."""
    filtering = row_filter is not None and not row_filter.is_identity
    index = 0
    sent: list[bytes] = []
    originals: list[bytes] = []
    size = 0
    first_line = 0
    consumed = 0

    def flush() -> Batch:
        nonlocal index, sent, originals, size, consumed
        batch = Batch(
            index,
            first_line,
            len(sent),
            b"\n".join(sent),
            consumed,
            b"\n".join(originals) if filtering else None,
        )
        index += 1
        sent, originals, size, consumed = [], [], 0, 0
        return batch

    for number, record, nbytes in _iter_lines(stream):
        payload = _filter_record(record, row_filter, number) if filtering else record
        if filtering and not payload:
            raise RecordError(number, "InputFilter left nothing of the record to send")
        if len(payload) > limit:
            raise _too_large(number, limit)
        if sent and (single_record or size + 1 + len(payload) > limit):
            yield flush()
        if not sent:
            first_line = number
            size = len(payload)
        else:
            size += 1 + len(payload)
        sent.append(payload)
        if filtering:
            originals.append(record.rstrip(b"\r"))
        consumed += nbytes
    if sent:
        yield flush()


class FileTooLargeError(RecordError):
    """SplitType None: the file, sent whole, is larger than MaxPayloadInMB."""

    def __init__(self, size: int, limit: int) -> None:
        Exception.__init__(
            self,
            f"the file is {size / MIB:,.1f} MiB ({size:,} bytes), larger than MaxPayloadInMB "
            f"({limit // MIB} MiB): with SplitType None each file is sent whole in one "
            f"request; raise MaxPayloadInMB (at most 100) or split the file",
        )
        self.line = 1


def iter_whole_file(stream: BinaryIO, limit: int, *, binary: bool = False) -> Iterator[Batch]:
    """SplitType None: the whole file is one request (an empty file sends nothing).

    A binary file (Parquet, NPY) has no lines: its batch counts 0 records and the
    runner counts the answer's rows instead.
    """
    data = stream.read(limit + 1)
    if not data:
        return
    if len(data) > limit:
        stream.seek(0, 2)
        raise FileTooLargeError(stream.tell(), limit)
    records = 0 if binary else data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    yield Batch(0, 1, records, data, len(data))


def iter_batches(
    stream: BinaryIO,
    *,
    limit: int,
    split_type: str,
    batch_strategy: str,
    row_filter: RowFilter | None = None,
    binary: bool = False,
) -> Iterator[Batch]:
    """All batches of one file, in order; raises RecordError at the first bad record."""
    if split_type == "None":
        return iter_whole_file(stream, limit, binary=binary)
    filtering = row_filter is not None and not row_filter.is_identity
    if batch_strategy == "MultiRecord" and not filtering:
        return iter_batches_fast(stream, limit)
    return iter_batches_by_line(
        stream, limit, single_record=batch_strategy == "SingleRecord", row_filter=row_filter
    )
