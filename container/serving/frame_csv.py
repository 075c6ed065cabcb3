"""Headerless CSV to a DataFrame for models fitted on DataFrames (see `serving.frames`).

Rows are lines in the model's column order, as Batch Transform sends them;
fields may be quoted ("Paris, France") since string columns can hold commas.
pandas' C parser reads the body in place with a dtype per column (float64 for
numbers, object for strings); empty fields are missing, and in numeric columns
pandas' NA spellings too. When the parse fails or the rows are uneven, the
slow line-by-line `_diagnose` names the line and the column. A first line
equal to the column names is refused: the body must not carry a header.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from serving.body import Body
from serving.csv_codec import _NA_STRINGS, _is_number  # the numeric path's own rules
from serving.errors import RequestError
from serving.frame_columns import build_frame, columns_hint, convert, shorten
from serving.schema import InputSchema, Kind


def decode_csv(body: Body, schema: InputSchema) -> pd.DataFrame:
    """Headerless CSV in the model's column order to a DataFrame (pandas' C parser)."""
    body = body.without_trailing_blank_lines()
    _refuse_header(body, schema)
    width = len(schema.columns)
    numeric = {
        i
        for i, c in enumerate(schema.columns)
        if c.kind is Kind.NUMBER or (c.kind is Kind.CATEGORY and c.numeric_categories)
    }
    try:
        frame = pd.read_csv(
            body.reader(),
            header=None,
            engine="c",
            dtype={i: np.float64 if i in numeric else object for i in range(width)},
            na_values={i: list(_NA_STRINGS) if i in numeric else [""] for i in range(width)},
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except Exception as exc:  # a bad number, a long row, bad UTF-8...: name the line
        raise _diagnose(body, schema) or RequestError(
            400, f"malformed CSV: {shorten(str(exc).strip() or type(exc).__name__, 200)}"
        ) from None
    rows = len(frame)
    if frame.shape[1] != width or not _widths_ok(body, rows, width):
        raise _diagnose(body, schema) or RequestError(400, "malformed CSV: rows of unequal width")
    converted: dict[str, Any] = {}
    for index, column in enumerate(schema.columns):
        series = frame[index]
        if column.kind is Kind.NUMBER or (
            column.kind is Kind.STRING and column.missing is not None
        ):
            converted[column.name] = series  # as parsed: float64, or str with NaN for empty
        else:
            values = series.to_numpy()
            if column.kind is Kind.ANY:
                converted[column.name] = _any_from_text(values)
            else:  # a gap read as NaN becomes the column's own marker
                converted[column.name] = convert(column, values, "line")
    return build_frame(schema, converted)


def _any_from_text(values: np.ndarray) -> np.ndarray:
    """A column of unknown kind: numbers if every value parses as one, else the strings."""
    present = ~pd.isna(values)
    text = pd.Series(values[present], dtype=object)
    numbers = pd.to_numeric(text, errors="coerce")
    if (numbers.isna() & ~text.isin(_NA_STRINGS)).any():
        return values
    out = np.full(len(values), np.nan)
    out[present] = numbers.to_numpy(dtype=np.float64)
    return out


def _widths_ok(body: Body, rows: int, width: int) -> bool:
    """pandas fills short rows with NaN: count separators (with quotes, parse lines) to know."""
    if body.count(b'"') == 0:
        return width == 1 or body.count(b",") == rows * (width - 1)
    try:
        lines = _csv_lines(body)
    except (UnicodeDecodeError, csv.Error):
        return False
    return len(lines) == rows and all(len(fields) == width for fields in lines)


def _refuse_header(body: Body, schema: InputSchema) -> None:
    first = body.chunks[0][:4096] if body.chunks else b""
    line = first.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
    try:
        fields = next(csv.reader([line.decode("utf-8")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return
    if [f.strip() for f in fields] == list(schema.names):
        raise RequestError(
            400,
            "line 1 is a header (the model's column names); send rows without a header line",
        )


def _csv_lines(body: Body) -> list[list[str]]:
    text = body.joined().decode("utf-8").removeprefix("\ufeff")
    return [next(csv.reader([line]), []) for line in text.splitlines()]


def _diagnose(body: Body, schema: InputSchema) -> RequestError | None:
    """The first bad line and column, found slowly once the fast parse failed."""
    try:
        text = body.joined().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        return RequestError(400, f"body is not UTF-8 text (offset {err.start}); send UTF-8 CSV")
    width = len(schema.columns)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            return RequestError(
                400, f"line {number} is empty; send one row of {width} values per line"
            )
        try:
            fields = next(csv.reader(io.StringIO(line), strict=True))
        except csv.Error as exc:
            return RequestError(400, f"line {number}: malformed CSV ({exc})")
        if len(fields) != width:
            return RequestError(
                400,
                f"line {number} has {len(fields)} values, expected {width} "
                f"({columns_hint(schema)})",
            )
        for column, value in zip(schema.columns, fields, strict=True):
            if column.kind is Kind.NUMBER and not _is_number(value):
                return RequestError(
                    400,
                    f"line {number}, column {column.name!r}: {shorten(value)!r} is not a number",
                )
    return None
