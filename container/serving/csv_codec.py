"""Headerless numeric CSV to a float64 matrix: the hot path of Batch Transform.

Chosen by measuring 6 MiB payloads on one core (`bench/csv_decode.py` prints
the table; medians of 15 rounds, rows/s per CPU-second, 20 / 200 float
features, three runs on a 2-core machine whose speed drifts between runs, so
ratios to pandas in the same run are what compare):

    pandas C parser in 1 MiB blocks (until now)   1.0x
    pandas C parser, one parse + to_numpy         0.9-1.1x / 1.7-2.0x
    pyarrow.csv, one thread                       1.0-1.3x / 1.5-2.1x
    polars, one thread                            1.0-1.7x / 2.5-2.8x
    pysimdjson, lines read as JSON arrays         1.8-1.9x / 3.8x
    this module (simdjson + its checks)           1.6-1.7x / 3.5x
    numpy.loadtxt                                 0.3x / 0.6x

Three decoders in turn, each trusted only where it cannot differ from pandas,
which stays the reference: `serving.csv_simd` (plain numbers only: no NaN,
empty fields or spellings JSON lacks), then polars, then `decode_csv_whole`
(pandas, the matrix served until now), whose errors name the line and column
(`diagnose_csv`). polars is refused anything it refuses, any NaN or infinity
that was not an empty (or NA) field, a lone carriage return, and missing values
next to a short line or a field of blanks. All three parse floats to the
nearest double, so matrices are bit-identical (a hypothesis test checks it on
random and edge-case input, chunked at random).

polars also reads and writes Parquet (`serving.columnar`), so one library
serves both; it adds ~188 MB to the image, pysimdjson ~15 MB
(`bench/image_size.py`). polars runs its work on a thread pool that does not
survive `fork()`: a process that used it and then forks would leave its
children waiting forever. So `serve`'s parent (which forks the workers) warms
up with `without_polars()`, and a child forked from a process that did use
polars falls back to pandas where simdjson gives up.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from serving import csv_simd
from serving.body import Body
from serving.errors import RequestError

# One parser thread per worker (serve runs one worker per core); must be set
# before polars starts its pool.
os.environ.setdefault("POLARS_MAX_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))

import polars as pl

log = logging.getLogger("serving")

# pandas' default missing-value spellings, which the fast path accepts as NaN.
_NA_STRINGS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip
_NA_LIST = sorted(_NA_STRINGS - {""})  # polars reads an empty field as null already
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff".encode()
EMPTY = "empty body: send one or more rows of numbers"

_CSV_OPTIONS: dict[str, Any] = {
    "header": None,
    "dtype": np.float64,
    "engine": "c",
    # Records are lines, as Batch Transform splits them: no quoting, so a stray
    # quote cannot swallow line breaks and shift rows.
    "quoting": csv.QUOTE_NONE,
    "skip_blank_lines": False,
}

_state = {"polars": True, "used": False}


def _after_fork_in_child() -> None:
    if _state["used"]:
        _state["polars"] = False
        log.warning("forked after using polars: this process parses CSV with pandas (slower)")


os.register_at_fork(after_in_child=_after_fork_in_child)


def polars_usable() -> bool:
    """Whether this process may run polars (see the module docstring); marks it used."""
    if _state["polars"]:
        _state["used"] = True
        return True
    return False


@contextlib.contextmanager
def without_polars() -> Iterator[None]:
    """Decode without polars inside the block (in a process about to fork workers)."""
    before = _state["polars"]
    _state["polars"] = False
    try:
        yield
    finally:
        _state["polars"] = before


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _shorten(text.splitlines()[0], 200) if text else type(exc).__name__


def decode_csv(body: bytes | Body, feature_count: int | None) -> np.ndarray:
    """Headerless CSV, one row per line, comma-separated numbers."""
    body = Body.of(body)
    if body.is_blank():
        raise RequestError(400, EMPTY)
    body = body.without_trailing_blank_lines()
    data = body.joined()
    width = feature_count if feature_count is not None else _first_line_width(data)
    if width <= _MAX_GUESSED_WIDTH or width == feature_count:
        matrix = None
        if csv_simd.preferred(len(data), width) or not polars_usable():
            matrix = csv_simd.decode(data, width)
        if matrix is None and polars_usable():
            matrix = _decode_polars(body, width)
        if matrix is not None:
            return matrix
    return decode_csv_whole(body, feature_count)


def _first_line_width(data: bytes) -> int:
    """Fields on the first line: pandas' width when the model does not say."""
    end = data.find(b"\n")
    return data.count(b",", 0, end if end >= 0 else len(data)) + 1


_SCHEMAS: dict[int, dict[str, Any]] = {}
# A model that does not say its width gets pandas beyond this many columns.
_MAX_GUESSED_WIDTH = 10_000


def _decode_polars(body: Body, width: int) -> np.ndarray | None:
    """The matrix, or None when pandas must decide (see the module docstring)."""
    data = body.joined()
    if b"\r" in data and b"\r" in data.replace(b"\r\n", b""):
        return None  # pandas ends a line at a lone CR too; polars reads it as part of a field
    schema = _SCHEMAS.get(width)
    if schema is None:
        schema = {f"c{i}": pl.Float64 for i in range(width)}
        if len(_SCHEMAS) < 16:  # models' widths, mostly: worth keeping
            _SCHEMAS[width] = schema
    # Every NA spelling holds an N, n or #: without them, skip polars' (costly) NA matching.
    spelled = b"N" in data or b"n" in data or b"#" in data
    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            quote_char=None,
            schema=schema,
            null_values=_NA_LIST if spelled else None,
        )
    except Exception:  # whatever it was, pandas decides and names it
        return None
    # One row per line: with no quoting and no comment prefix polars cannot join or
    # skip lines, and a blank line comes back as a row of nulls (caught below).
    rows = frame.height
    if not rows:
        return None
    matrix = frame.to_numpy()
    if matrix.dtype != np.float64 or matrix.shape != (rows, width):
        return None
    finite = np.isfinite(matrix)
    if not finite.all():
        nulls = sum(frame.null_count().row(0))
        if matrix.size - int(np.count_nonzero(finite)) != nulls:
            return None  # NaN or infinity spelled out: pandas' spellings are the contract
        # Empty fields are fine; a short or blank line is not (counting separators
        # tells), and polars also reads a field of spaces or tabs as null.
        if width == 1 or body.count(b",") != rows * (width - 1):
            return None
        if b" " in data or b"\t" in data:
            return None
    return matrix


def decode_csv_whole(body: bytes | Body, feature_count: int | None) -> np.ndarray:
    """The reference decoder (pandas): the whole body in one parse, exact errors."""
    body = Body.of(body).without_trailing_blank_lines()
    if len(body.chunks) > 1 and len(body.chunks[0]) < len(_BOM):
        body = Body([body.joined()])  # pandas sees a byte-order mark only in its first read
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
        return RequestError(400, EMPTY)
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
