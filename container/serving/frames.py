"""Request bodies to DataFrames for models fitted on DataFrames (see `serving.schema`).

Every request becomes a DataFrame with the model's columns in the model's
order: numbers as float64 (NaN for missing), strings as Python `str` in an
object column (the model's own missing marker, NaN or None, for an empty
field), `category` where the model was fitted on that dtype. Accepted shapes:

* CSV, headerless as Batch Transform sends it, one row per line in the
  model's column order; fields may be quoted ("Paris, France"). Empty
  fields are missing; in numeric columns pandas' NA spellings are too.
* JSON: `{"instances": rows}` or a bare list of rows, each row a list in the
  model's order or an object by column name (records), or pandas' split form
  `{"columns": [...], "data": [[...], ...]}`.
* JSON Lines: one array or one object per line.

Anything wrong is a 400 naming the line or row and the column. When every
column is a number (a numeric model fitted on a DataFrame), the result is the
float matrix the numeric path uses, so records and split JSON work there too.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pandas as pd

from serving.body import Body
from serving.codecs import _load_json, load_json_lines, rows_to_matrix
from serving.errors import RequestError, input_rejected
from serving.frame_columns import check_names, frame_from_columns
from serving.frame_csv import decode_csv
from serving.negotiation import Format
from serving.schema import InputSchema

__all__ = [
    "decode",
    "explain_rejection",
    "frame_from_columns",
    "handles",
    "sample_bodies",
    "to_features",
]

FORMATS = frozenset({Format.CSV, Format.JSON, Format.JSONLINES})
_EMPTY = "empty body: send one or more rows"


def decode(fmt: Format, body: bytes | Body, schema: InputSchema) -> np.ndarray | pd.DataFrame:
    """Features for one request: a DataFrame, or a float matrix for all-numeric columns."""
    body = Body.of(body)
    if body.is_blank():
        raise RequestError(400, _EMPTY)
    if fmt is Format.CSV:
        return to_features(schema, decode_csv(body, schema))
    data = body.joined()
    # numpy turns true/false into 1/0 without a word: look before trusting it.
    booleans = b"true" in data or b"false" in data
    if fmt is Format.JSON:
        return _from_document(_load_json(data, "body"), schema, booleans)
    return _from_lines(data, schema, booleans)


def handles(schema: InputSchema, fmt: Format) -> bool:
    """Whether `decode` is the decoder: DataFrame models, and any JSON for named columns.

    Numeric CSV keeps the numeric fast path even for a model fitted on a
    DataFrame of numbers (it makes the same matrix).
    """
    return fmt in FORMATS and (schema.needs_frame or fmt is not Format.CSV)


def to_features(schema: InputSchema, frame: pd.DataFrame) -> np.ndarray | pd.DataFrame:
    """What predict takes: the frame, or its float matrix when every column is a number."""
    if schema.needs_frame:
        return frame
    return frame.to_numpy(dtype=np.float64)


# ------------------------------------------------------------------------ JSON


def _from_document(document: Any, schema: InputSchema, booleans: bool) -> np.ndarray | pd.DataFrame:
    if isinstance(document, dict) and "columns" in document and "data" in document:
        return _from_split(document, schema)
    if isinstance(document, dict):
        if "instances" not in document:
            raise RequestError(
                400,
                'JSON object has neither "instances" nor "columns" and "data"; send '
                '{"instances": [{"column": value, ...}, ...]} or pandas\' split form',
            )
        document = document["instances"]
    if not isinstance(document, list):
        raise RequestError(
            400, 'expected a list of rows, e.g. {"instances": [{"column": value, ...}, ...]}'
        )
    return _from_rows(document, schema, "row", booleans)


def _from_split(document: dict[str, Any], schema: InputSchema) -> np.ndarray | pd.DataFrame:
    names, data = document["columns"], document["data"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError(400, '"columns" must be a list of column names')
    if not isinstance(data, list):
        raise RequestError(400, '"data" must be a list of rows')
    check_names(schema, names, "")
    _check_widths(data, len(names), "row")
    if not data:
        raise RequestError(400, "no rows: send at least one row")
    columns = dict(zip(names, map(list, zip(*data, strict=True)), strict=True))
    return to_features(schema, frame_from_columns(schema, columns, "row"))


def _from_lines(body: bytes, schema: InputSchema, booleans: bool) -> np.ndarray | pd.DataFrame:
    return _from_rows(load_json_lines(body, "one JSON row"), schema, "line", booleans)


def _from_rows(
    rows: list[Any], schema: InputSchema, word: str, booleans: bool
) -> np.ndarray | pd.DataFrame:
    if not rows:
        raise RequestError(400, "no rows: send at least one row")
    if isinstance(rows[0], dict):
        return _from_records(rows, schema, word)
    if not schema.needs_frame:  # numbers only: today's numeric path, same speed
        return rows_to_matrix(rows, len(schema.columns), word, booleans)
    _check_widths(rows, len(schema.columns), word)
    columns = dict(zip(schema.names, map(list, zip(*rows, strict=True)), strict=True))
    return frame_from_columns(schema, columns, word)


def _check_widths(rows: list[Any], width: int, word: str) -> None:
    for number, row in enumerate(rows, 1):
        if isinstance(row, dict):
            raise RequestError(
                400, f"{word} {number} is an object, {word} 1 a list; send rows of one kind"
            )
        if not isinstance(row, list):
            raise RequestError(
                400, f'{word} {number} is not a list of values; send rows like [40, "Paris"]'
            )
        if len(row) != width:
            raise RequestError(400, f"{word} {number} has {len(row)} values, expected {width}")


def _from_records(rows: list[Any], schema: InputSchema, word: str) -> np.ndarray | pd.DataFrame:
    keys = set(schema.names)
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise RequestError(
                400, f"{word} {number} is not an object, {word} 1 is; send rows of one kind"
            )
        if row.keys() != keys:
            check_names(schema, list(row), f"{word} {number}: ")
    columns = {name: [row[name] for row in rows] for name in schema.names}
    return to_features(schema, frame_from_columns(schema, columns, word))


# --------------------------------------------------------- warm-up, rejections


def sample_bodies(schema: InputSchema) -> dict[Format, bytes]:
    """One valid row per format, from values the model knows (for `inference.warm_up`)."""
    row = [column.sample() for column in schema.columns]
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(row)
    record = dict(zip(schema.names, row, strict=True))
    return {
        Format.CSV: line.getvalue().encode(),
        Format.JSON: json.dumps({"instances": [record]}).encode(),
        Format.JSONLINES: json.dumps(row).encode(),
    }


def explain_rejection(frame: pd.DataFrame, exc: Exception, word: str) -> RequestError:
    """A 400 naming the row and column the model refused, when it can be found."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f":
            finite = np.isfinite(values.to_numpy())
            if not finite.all():
                row = int(np.argmin(finite))
                what = "missing" if np.isnan(values.iloc[row]) else "infinite"
                return RequestError(
                    400,
                    f"{word} {row + 1}, column {column!r} is {what}, which this model does "
                    f"not accept; send a number",
                )
    return input_rejected(exc)
