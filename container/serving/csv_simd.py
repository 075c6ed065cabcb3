"""The fastest exact path for numbers-only CSV: read it as JSON with simdjson.

A headerless CSV of plain numbers is, once each line break becomes `],[`, a
JSON array of rows; simdjson (pysimdjson) parses that at ~650 MB/s per core and
hands back every value as one float64 buffer, without a Python object per
value. On the bench's 20-feature payload the parse alone is 1.8-1.9x pandas'
speed, polars 1.0-1.7x in the same runs (`bench/csv_decode.py`); for small
bodies it skips polars' fixed ~0.45 ms a call. `preferred` says when it goes
first: polars stays ahead for large bodies of 2-7 columns. Both
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


def preferred(size: int, width: int) -> bool:
    """Whether to try this before polars, by what each costs (6 MiB bodies, one core).

    polars pays ~0.45 ms a call whatever the size (simdjson: ~15 us for one
    row) and then ~1.9 ms per MiB whatever the width; simdjson's cost grows
    with the number of rows (one array each): 9-11 ms per 6 MiB from 8
    features up, 13-15 ms at 3-4, 26 ms at 1 with row arrays, 9 ms without.
    """
    return width == 1 or width >= 8 or size < 256 * 1024


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
    if width == 1:  # no row arrays: one value per line is all there can be without commas
        if b"," in data:
            return None
        text = b"[" + data.replace(b"\n", b",") + b"]"
    else:
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
        if width > 1 and set(map(len, document)) != {width}:
            return None
        # A nested array would be flattened into its row: there are none, since
        # the body holds no brackets and every row's length matched.
        return np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    finally:
        del document  # the parser refuses to parse again while it is referenced
