"""The fastest exact path for numbers-only CSV: read it as JSON with simdjson.

A headerless CSV of plain numbers is, once each line break becomes `],[`, a
JSON array of rows; simdjson (pysimdjson) parses that at ~650 MB/s per core and
hands back every value as one float64 buffer, without a Python object per
value. That is ~1.5x faster than polars on the bench's 20-feature payload and
~2.5x faster than pandas (`bench/csv_decode.py` prints the table). Both
simdjson and polars round every number to the nearest double, so the matrices
are bit-identical to polars' and to pandas' (the hypothesis test in
tests/serving/test_serving_units.py checks it against pandas).

JSON's number grammar is narrower than pandas' (no `NaN`, `inf`, empty
fields, `+1`, `.5`, `1.`), so anything else is a parse error here and the
caller moves on to polars, then pandas, which give the exact answer or the
exact error. What JSON would accept but CSV must not is refused up front:
brackets (which would nest rows), a carriage return that is not part of CRLF
(pandas reads it as a line break), and the integer `-0` (JSON makes it +0.0,
pandas -0.0). Every row must hold exactly `width` values.
"""

from __future__ import annotations

import threading

import numpy as np
import simdjson

# A parser keeps the buffers of the largest document it has read (~25 MiB
# resident after a 6 MiB body): re-using one saves ~1 ms of page faults per
# 6 MiB. Bodies above this get a fresh parser whose memory goes back when the
# request ends; an idle worker drops the kept one (`release`).
_REUSE_UP_TO = 16 * 1024 * 1024
_local = threading.local()
# An integer -0 (JSON reads +0.0) ends at a separator or JSON whitespace.
_MINUS_ZERO = (b"-0,", b"-0]", b"-0 ", b"-0\t")


def _parser(size: int) -> simdjson.Parser:
    if size > _REUSE_UP_TO:
        return simdjson.Parser()
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def release() -> None:
    """Free this thread's parser and its buffers (a worker calls this when idle)."""
    _local.parser = None


def decode(data: bytes, width: int) -> np.ndarray | None:
    """The (rows, width) float64 matrix in Fortran order, or None to let polars decide.

    `data` is the whole body, at most one line break at its end.
    """
    if b"[" in data or b"]" in data:
        return None
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:
            return None
    if data.endswith(b"\n"):
        data = data[:-1]
    text = b"[[" + data.replace(b"\n", b"],[") + b"]]"
    try:
        flat = _values(_parser(len(text)), text, width)
    except (ValueError, TypeError, RuntimeError):  # not JSON numbers: polars decides
        _local.parser = None  # whatever state it was left in, start afresh
        return None
    if flat is None:
        return None
    if not flat.all() and any(pattern in text for pattern in _MINUS_ZERO):
        return None
    # pandas' and polars' layout: models that multiply matrices (BLAS) give the
    # same bits only for the same memory order.
    return np.asfortranarray(flat.reshape(-1, width))


def _values(parser: simdjson.Parser, text: bytes, width: int) -> np.ndarray | None:
    document = parser.parse(text)
    try:
        if any(length != width for length in set(map(len, document))):
            return None
        # A nested array would be flattened into its row: there are none, since
        # the body holds no brackets and every row's length matched.
        return np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    finally:
        del document  # the parser refuses to parse again while it is referenced
