"""Request bodies to feature matrices and predictions to response bodies.

CSV is the format Batch Transform sends at volume, so its decoder is the hot
path. It was chosen by measuring 6 MiB payloads of 20 float features on one
core (the server runs one worker per core, so single-threaded speed is what
counts; `bench/serving.py` has the end-to-end figures):

    pandas C engine           ~20 ms  (~300 MiB/s)
    pyarrow, 1 thread         ~18 ms  (+165 MB of image)
    polars, 1 thread          ~12 ms  (+170 MB of image)
    numpy.loadtxt / fromstring ~100 ms

pandas is already a dependency; pyarrow is hardly faster per core and polars'
gain does not pay for doubling the image. The body is parsed where it lies:
pandas reads the received chunks one by one (`serving.body`), never a joined
copy. The slow, line-by-line `diagnose_csv` runs only when something is wrong,
to say exactly which line and column.

Every decoder returns a 2-D float64 array; NaN stands for a missing value
(empty field, `NaN`, `NA`, `null`) and whether the model takes it is decided
when predicting. Response rows are the label, followed by probability columns
when asked; CSV and JSON Lines put one row per line, joined by newlines and
without a trailing one (Batch Transform's AssembleWith=Line adds it).
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from serving.body import Body
from serving.errors import RequestError
from serving.negotiation import Format

# pandas' default missing-value spellings, which the fast path accepts as NaN.
_NA_STRINGS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_EMPTY = "empty body: send one or more rows of numbers"


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _shorten(text.splitlines()[0], 200) if text else type(exc).__name__


def decode(fmt: Format, body: bytes | Body, feature_count: int | None) -> np.ndarray:
    """Feature matrix (rows x features, float64) from a request body."""
    body = Body.of(body)
    if body.is_blank():
        raise RequestError(400, _EMPTY)
    if fmt is Format.CSV:
        return decode_csv(body, feature_count)
    if fmt is Format.JSON:
        return decode_json(body.joined(), feature_count)
    return decode_jsonlines(body.joined(), feature_count)


# --------------------------------------------------------------------------- CSV


# Measured: pandas parses 6 MiB ~15% faster as a few ~1 MiB blocks than in one
# go (its tokenizer's buffers stay in cache).
CSV_BLOCK_BYTES = 1 << 20

_CSV_OPTIONS: dict[str, Any] = {
    "header": None,
    "dtype": np.float64,
    "engine": "c",
    # Records are lines, as Batch Transform splits them: no quoting, so a stray
    # quote cannot swallow line breaks and shift rows.
    "quoting": csv.QUOTE_NONE,
    "skip_blank_lines": False,
}


def decode_csv(body: bytes | Body, feature_count: int | None) -> np.ndarray:
    """Headerless CSV, one row per line, comma-separated numbers."""
    decoder = CsvDecoder(feature_count)
    for chunk in Body.of(body).chunks:
        decoder.feed(chunk)
    return decoder.finish()


class CsvDecoder:
    """Incremental CSV decoding: each ~1 MiB of complete lines is parsed as it comes.

    `feed` takes the body chunk by chunk (as received; chunks are not joined),
    `finish` returns the matrix. Blocks are cut just after a line break.
    (Feeding chunks while the rest of the body is still in transit was
    measured too: no gain with one client per worker, so the server decodes
    after the body has arrived.) Anything unusual in a
    block (a parse error, a row of the wrong width, a NaN that might be a short
    or blank line) abandons the fast path, and `finish` decodes the whole body
    with `decode_csv_whole`, whose errors name the exact line, so the result
    never depends on where the blocks were cut.
    """

    def __init__(self, feature_count: int | None) -> None:
        self.feature_count = feature_count
        self._received: list[bytes] = []
        self._pending: list[bytes] = []  # not parsed yet; _pending[0] from _start on
        self._start = 0
        self._pending_size = 0
        self._blocks: list[np.ndarray] = []
        self._failed = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._received.append(chunk)
        if self._failed:
            return
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        while self._pending_size >= CSV_BLOCK_BYTES and not self._failed and self._cut_block():
            pass

    def finish(self) -> np.ndarray:
        body = Body(self._received)
        if body.is_blank():
            raise RequestError(400, _EMPTY)
        if not self._failed and self._pending_size:
            rest = Body(self._take_pending(len(self._pending[-1]))).without_trailing_blank_lines()
            if rest.chunks:
                self._parse(rest)
        if self._failed or not self._blocks:
            return decode_csv_whole(body, self.feature_count)
        matrix = np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
        if self.feature_count is not None and matrix.shape[1] != self.feature_count:
            return decode_csv_whole(body, self.feature_count)  # raises, naming the line
        return matrix

    def _cut_block(self) -> bool:
        """Parse the pending data up to a line break near CSV_BLOCK_BYTES; False to wait."""
        last = self._pending[-1]
        base = self._start if len(self._pending) == 1 else 0
        before = self._pending_size - (len(last) - base)
        target = base + max(0, CSV_BLOCK_BYTES - before)
        cut = last.rfind(b"\n", base, target) if target > base else -1
        if cut < 0:
            cut = last.find(b"\n", target)
        if cut < 0:
            return False  # no line ends in the newest chunk yet
        self._parse(Body(self._take_pending(cut + 1)))
        return True

    def _take_pending(self, end: int) -> list[bytes]:
        """Pending data up to offset `end` of the newest chunk; the rest stays pending."""
        last = self._pending[-1]
        pieces = []
        for index, chunk in enumerate(self._pending):
            start = self._start if index == 0 else 0
            stop = end if index == len(self._pending) - 1 else len(chunk)
            piece = chunk if (start, stop) == (0, len(chunk)) else chunk[start:stop]
            pieces.append(piece)
        if end < len(last):
            self._pending, self._start = [last], end
        else:
            self._pending, self._start = [], 0
        self._pending_size = len(last) - end
        return pieces

    def _parse(self, block: Body) -> None:
        try:
            matrix = pd.read_csv(block.reader(), **_CSV_OPTIONS).to_numpy(dtype=np.float64)
        except Exception:  # whatever it was, the whole-body path will name it
            self._fail()
            return
        rows, columns = matrix.shape
        width = self._blocks[0].shape[1] if self._blocks else self.feature_count
        # pandas fails on long rows but fills short (or blank) ones with NaN. No
        # NaN at all proves every row was complete; with NaN, counting
        # separators tells short rows from missing values.
        if (width is not None and columns != width) or (
            bool(np.isnan(matrix).any())
            and (columns == 1 or block.count(b",") != rows * (columns - 1))
        ):
            self._fail()
            return
        self._blocks.append(matrix)

    def _fail(self) -> None:
        self._failed = True
        self._blocks = []
        self._pending = []
        self._pending_size = 0


def decode_csv_whole(body: bytes | Body, feature_count: int | None) -> np.ndarray:
    """The reference decoder: the whole body in one parse, exact errors when it fails."""
    body = Body.of(body).without_trailing_blank_lines()
    try:
        frame = pd.read_csv(body.reader(), **_CSV_OPTIONS)
        matrix = frame.to_numpy(dtype=np.float64)
    except Exception as exc:  # the C parser raises ParserError, ValueError, Unicode..., etc.
        found = diagnose_csv(body.joined(), feature_count)
        raise found or RequestError(400, f"malformed CSV: {_first_line(exc)}") from None
    rows, columns = matrix.shape
    suspicious = (feature_count is not None and columns != feature_count) or (
        bool(np.isnan(matrix).any()) and (columns == 1 or body.count(b",") != rows * (columns - 1))
    )
    if suspicious:
        found = diagnose_csv(body.joined(), feature_count)
        if found is not None:
            raise found
    return matrix


def diagnose_csv(body: bytes, feature_count: int | None) -> RequestError | None:
    """The first bad line, found slowly, once the fast parser gave up or looks wrong.

    None when every line is fine after all (a single column holding NaN, say).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        return RequestError(
            400,
            f"body is not UTF-8 text (byte 0x{body[err.start]:02x} at offset {err.start}); "
            f"send UTF-8 CSV",
        )
    text = text.removeprefix("\ufeff")
    lines = _LINE_BREAK.split(text)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return RequestError(400, _EMPTY)
    width = feature_count if feature_count is not None else len(lines[0].split(","))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            return RequestError(
                400, f"line {number} is empty; send one row of {width} numbers per line"
            )
        fields = line.split(",")
        if len(fields) != width:
            return RequestError(
                400,
                f"line {number} has {len(fields)} values, expected {width} "
                f"(comma-separated numbers, one row per line)",
            )
        for column, value in enumerate(fields, 1):
            if not _is_number(value):
                hint = "; send rows without a header line" if number == 1 else ""
                return RequestError(
                    400,
                    f"line {number}, column {column}: {_shorten(value)!r} is not a number{hint}",
                )
    return None


def _is_number(value: str) -> bool:
    stripped = value.strip()
    if stripped in _NA_STRINGS:
        return True
    if "_" in stripped:  # float() takes 1_000; the CSV parser does not
        return False
    try:
        float(stripped)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------- JSON


def decode_json(body: bytes, feature_count: int | None) -> np.ndarray:
    """`{"instances": [[...], ...]}` or a bare list of rows."""
    document = _load_json(body, "body")
    if isinstance(document, dict):
        if "instances" not in document:
            raise RequestError(
                400, 'JSON object has no "instances" key; send {"instances": [[1.0, 2.0], ...]}'
            )
        document = document["instances"]
    if not isinstance(document, list):
        raise RequestError(
            400,
            'expected a list of rows, e.g. {"instances": [[1.0, 2.0], ...]} or [[1.0, 2.0], ...]',
        )
    return rows_to_matrix(document, feature_count, "row", _may_hold_booleans(body))


def decode_jsonlines(body: bytes, feature_count: int | None) -> np.ndarray:
    """One JSON array of numbers per line."""
    lines = body.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise RequestError(400, f"line {number} is empty; send one JSON array per line")
        rows.append(_load_json(line, f"line {number}"))
    return rows_to_matrix(rows, feature_count, "line", _may_hold_booleans(body))


def _load_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError as err:
        message = f"{where} is not UTF-8 text (offset {err.start}); send UTF-8 JSON"
        raise RequestError(400, message) from None
    except json.JSONDecodeError as err:
        raise RequestError(
            400, f"{where}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except RecursionError:
        raise RequestError(400, f"{where}: JSON nested too deeply") from None
    except ValueError as err:  # e.g. an integer literal too long to convert
        raise RequestError(400, f"{where}: malformed JSON: {_first_line(err)}") from None


def _may_hold_booleans(body: bytes) -> bool:
    # numpy turns true/false into 1/0 without a word; look before trusting it.
    return b"true" in body or b"false" in body


def rows_to_matrix(
    rows: list[Any], feature_count: int | None, word: str, check_each: bool = False
) -> np.ndarray:
    """Rows of numbers (None = missing) to float64; `word` names rows in messages.

    numpy converts well-formed rows in one call; anything it cannot (or, with
    `check_each`, might wrongly) convert goes through the value-by-value check
    that names the offending row and column.
    """
    if not rows:
        raise RequestError(400, "no rows: send at least one row of numbers")
    matrix = None
    if not check_each:
        try:
            matrix = np.asarray(rows)
        except Exception:  # ragged, nested, huge integers...: find out below
            matrix = None
    if (
        matrix is not None
        and matrix.ndim == 2
        and matrix.dtype.kind in "iuf"
        and matrix.shape[1]
        and (feature_count is None or matrix.shape[1] == feature_count)
    ):
        return matrix.astype(np.float64, copy=False)
    width = feature_count
    if width is None:
        first = rows[0]
        width = len(first) if isinstance(first, list) else None
    values: list[list[float]] = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, list):
            raise RequestError(
                400, f"{word} {number} is not a list of numbers; send rows like [1.0, 2.0]"
            )
        if not row:
            raise RequestError(400, f"{word} {number} is empty; send rows like [1.0, 2.0]")
        if len(row) != width:
            raise RequestError(400, f"{word} {number} has {len(row)} values, expected {width}")
        converted = []
        for column, value in enumerate(row, 1):
            if value is None:
                converted.append(np.nan)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                shown = _shorten(json.dumps(value, default=str))
                raise RequestError(
                    400, f"{word} {number}, column {column}: {shown} is not a number"
                )
            try:
                converted.append(float(value))
            except OverflowError:
                raise RequestError(
                    400, f"{word} {number}, column {column}: number out of range"
                ) from None
        values.append(converted)
    return np.array(values, dtype=np.float64)


# ----------------------------------------------------------------------- output


def encode(fmt: Format, labels: np.ndarray, probabilities: np.ndarray | None) -> bytes:
    """Response body: one output row per input row, in order."""
    if fmt is Format.CSV:
        return encode_csv(labels, probabilities)
    rows = _output_rows(labels, probabilities)
    if fmt is Format.JSON:
        return _dumps({"predictions": rows}).encode()
    return "\n".join(map(_dumps, rows)).encode()


def encode_csv(labels: np.ndarray, probabilities: np.ndarray | None) -> bytes:
    columns = [_label_strings(labels)]
    if probabilities is not None:
        columns.extend(list(map(repr, column)) for column in probabilities.T.tolist())
    if len(columns) == 1:
        return "\n".join(columns[0]).encode()
    return "\n".join(map(",".join, zip(*columns, strict=True))).encode()


def _label_strings(labels: np.ndarray) -> list[str]:
    if labels.ndim == 2:  # multi-output estimators: several values per row
        return [",".join(_label_strings(np.asarray(row))) for row in labels]
    kind = labels.dtype.kind
    values = labels.tolist()
    if kind in "iub":
        return list(map(str, values))
    if kind == "f":
        return list(map(repr, values))
    # Strings or objects: few distinct labels, each quoted once if CSV needs it.
    cache: dict[Any, str] = {}
    out = []
    for value in values:
        try:
            text = cache.get(value)
        except TypeError:  # unhashable
            out.append(_csv_field(str(value)))
            continue
        if text is None:
            text = cache[value] = _csv_field(str(value))
        out.append(text)
    return out


def _csv_field(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _output_rows(labels: np.ndarray, probabilities: np.ndarray | None) -> list[Any]:
    values = labels.tolist()
    if probabilities is None:
        return values
    return [[value, *probs] for value, probs in zip(values, probabilities.tolist(), strict=True)]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars inside object arrays
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_jsonable)
