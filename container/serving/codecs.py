"""Request bodies to feature matrices and predictions to response bodies.

Decoders by format: CSV (the hot path, `serving.csv_codec`), JSON and JSON
Lines (here), Parquet and NPY (`serving.columnar`). Every decoder returns a
2-D float64 array (or, for Parquet into a model with named columns, what
`serving.frames` builds); NaN stands for a missing value (empty field, `NaN`,
`NA`, `null`) and whether the model takes it is decided when predicting.

Response rows are the label, followed by probability columns when asked; CSV
and JSON Lines put one row per line, joined by newlines and without a trailing
one (Batch Transform's AssembleWith=Line adds it); Parquet answers with one
file (`serving.columnar.encode_parquet`). Values a format cannot spell as
numbers: JSON has no NaN or infinity, so non-finite predictions or
probabilities are `null` there; CSV writes `nan`, `inf`, `-inf`, which pandas,
polars, numpy and Python's float() all read back as the same value. A label
holding a comma, quote or line break (CR or LF) is quoted as RFC 4180 says, so
a CSV reader gets exactly one record per input row.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from serving import columnar
from serving.body import Body
from serving.csv_codec import (  # re-exported: serving.codecs is where callers look
    _NA_STRINGS,
    EMPTY,
    _first_line,
    _shorten,
    decode_csv,
    decode_csv_whole,
    diagnose_csv,
)
from serving.errors import ModelError, RequestError
from serving.negotiation import Format

if TYPE_CHECKING:
    import pandas as pd

    from serving.schema import InputSchema

__all__ = [
    "_NA_STRINGS",
    "decode",
    "decode_csv",
    "decode_csv_whole",
    "decode_json",
    "decode_jsonlines",
    "diagnose_csv",
    "encode",
    "rows_to_matrix",
]
_EMPTY = EMPTY


def decode(
    fmt: Format,
    body: bytes | Body,
    feature_count: int | None,
    *,
    schema: InputSchema | None = None,
) -> np.ndarray | pd.DataFrame:
    """Feature matrix (rows x features, float64) from a request body.

    `schema` (the model's named columns, when known) matters to Parquet only:
    its columns are matched by name.
    """
    body = Body.of(body)
    if body.is_blank():
        raise RequestError(400, _EMPTY)
    if fmt is Format.CSV:
        return decode_csv(body, feature_count)
    if fmt is Format.PARQUET:
        return columnar.decode_parquet(body, feature_count, schema)
    if fmt is Format.NPY:
        return columnar.decode_npy(body, feature_count)
    if fmt is Format.JSON:
        return decode_json(body.joined(), feature_count)
    return decode_jsonlines(body.joined(), feature_count)


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
    rows = load_json_lines(body, "one JSON array")
    return rows_to_matrix(rows, feature_count, "line", _may_hold_booleans(body))


def load_json_lines(body: bytes, what: str) -> list[Any]:
    """Each line's JSON value; trailing blank lines ignored, any other blank line a 400."""
    lines = body.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    values = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise RequestError(400, f"line {number} is empty; send {what} per line")
        values.append(_load_json(line, f"line {number}"))
    return values


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
    if fmt is Format.PARQUET:
        return columnar.encode_parquet(labels, probabilities)
    rows = _output_rows(
        _json_safe(labels), None if probabilities is None else _json_safe(probabilities)
    )
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
    if "\n" in text or "\r" in text:
        # Quoting would keep a CSV reader right, but Batch Transform (AssembleWith Line,
        # JoinSource Input) and every line-by-line consumer count physical lines.
        raise ModelError(
            f"model error in predict: label {_shorten(text)!r} holds a line break, which CSV "
            f"output cannot carry as one line per row; ask for Accept: application/jsonlines "
            f"or application/json, or rename the model's classes"
        )
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _json_safe(values: np.ndarray) -> Any:
    """`values.tolist()` with NaN and infinities as None: JSON cannot spell them."""
    kind = values.dtype.kind
    if kind in "fc" and not np.isfinite(values).all():
        as_objects = values.astype(object)
        as_objects[~np.isfinite(values)] = None
        return as_objects.tolist()
    if kind == "O":
        return _objects_json_safe(values.tolist())
    return values.tolist()


def _objects_json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_objects_json_safe(item) for item in value]
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _output_rows(labels: list[Any], probabilities: list[Any] | None) -> list[Any]:
    if probabilities is None:
        return labels
    return [[value, *probs] for value, probs in zip(labels, probabilities, strict=True)]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars inside object arrays
        return _objects_json_safe(value.item())
    if hasattr(value, "tolist"):
        return _objects_json_safe(value.tolist())
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_jsonable, allow_nan=False)
