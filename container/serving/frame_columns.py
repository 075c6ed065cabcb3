"""Named columns to the DataFrame a model fitted on a DataFrame takes (see `serving.frames`).

The one place where request values become the dtypes the model expects:
numbers to float64 (NaN for missing), strings to an object column with the
model's own missing marker, `category` with the fitted categories. Every
decoder (CSV, JSON, Parquet) ends here, so the rules and the messages (row
and column named) are the same whatever the format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from serving.errors import RequestError
from serving.schema import Column, InputSchema, Kind

_NUMBER_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


def frame_from_columns(
    schema: InputSchema, columns: Mapping[str, Any], word: str = "row"
) -> pd.DataFrame:
    """A DataFrame in the model's column order from named columns (lists, arrays, Series).

    Refuses a missing or unknown column, and a value of the wrong kind, with a
    400 naming the column (and the row, counted from 1 and called `word`).
    """
    names = [str(name) for name in columns]
    check_names(schema, names, "")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise RequestError(400, "columns have different lengths; send one value per row in each")
    if not lengths or not lengths.pop():
        raise RequestError(400, "no rows: send at least one row")
    by_name = {str(name): values for name, values in columns.items()}
    return build_frame(schema, {c.name: convert(c, by_name[c.name], word) for c in schema.columns})


def build_frame(schema: InputSchema, converted: Mapping[str, Any]) -> pd.DataFrame:
    # Series with explicit dtypes: pandas 3 would otherwise turn object columns
    # of strings into its `str` dtype, which has no None.
    return pd.DataFrame(
        {
            name: values
            if isinstance(values, pd.Series)
            else pd.Series(values, dtype=values.dtype, copy=False)
            for name, values in converted.items()
        },
        columns=list(schema.names),
        copy=False,
    )


def check_names(schema: InputSchema, names: Sequence[str], where: str) -> None:
    expected = schema.positions
    given = set(names)
    missing = [name for name in schema.names if name not in given]
    if missing:
        raise RequestError(
            400,
            f"{where}missing column {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            f"the model takes {columns_hint(schema)}",
        )
    unknown = [name for name in names if name not in expected]
    if unknown:
        raise RequestError(
            400,
            f"{where}unknown column {shorten(unknown[0])!r}; the model takes "
            f"{columns_hint(schema)}",
        )
    if len(names) != len(set(names)):
        raise RequestError(400, f"{where}a column is named twice; send each once")


def columns_hint(schema: InputSchema, limit: int = 12) -> str:
    names = schema.names
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} columns: {shown}"


def convert(column: Column, values: Any, word: str = "row") -> np.ndarray | pd.Series:
    """One column's values in the form the model needs (see the module doc)."""
    if column.kind is Kind.NUMBER:
        return _numbers(column, values, word)
    if column.kind is Kind.ANY:
        try:
            return _numbers(column, values, word)
        except RequestError:
            return _strings(column, values, word, numbers_ok=True)
    if column.kind is Kind.CATEGORY:
        return _categories(column, values, word)
    return _strings(column, values, word)


def _numbers(column: Column, values: Any, word: str) -> np.ndarray:
    array = values.to_numpy() if isinstance(values, pd.Series) else values
    if isinstance(array, np.ndarray) and array.dtype.kind in "iuf":
        return array.astype(np.float64, copy=False)
    if isinstance(array, np.ndarray) and array.dtype.kind in "OUS":
        array = array.tolist()
    if isinstance(array, list | tuple) and _NUMBER_TYPES.issuperset(map(type, array)):
        try:
            return np.array(array, dtype=np.float64)
        except OverflowError:
            pass  # found below, by row
    values = list(array) if not isinstance(array, list | tuple) else array
    for index, value in enumerate(values):
        if _is_missing(value):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise RequestError(
                400,
                f"{word} {index + 1}, column {column.name!r}: {_show(value)} is not a number",
            )
        try:
            float(value)
        except OverflowError:
            raise RequestError(
                400, f"{word} {index + 1}, column {column.name!r}: number out of range"
            ) from None
    return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)


def _strings(column: Column, values: Any, word: str, *, numbers_ok: bool = False) -> np.ndarray:
    if isinstance(values, pd.Series | np.ndarray):
        values = values.tolist()
    if not _TEXT_TYPES.issuperset(map(type, values)):
        values = [
            _text(column, value, index, word, numbers_ok) for index, value in enumerate(values)
        ]
    array = np.array(values, dtype=object)
    if any(v is None for v in values):
        array[array == None] = column.missing  # noqa: E711 (elementwise)
    return array


def _text(column: Column, value: Any, index: int, word: str, numbers_ok: bool) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(value)
    if numbers_ok and isinstance(value, float | np.floating):
        return repr(float(value))
    raise RequestError(
        400, f"{word} {index + 1}, column {column.name!r}: {_show(value)} is not text"
    )


def _categories(column: Column, values: Any, word: str) -> pd.Series:
    if column.numeric_categories:
        data: Any = _numbers(column, values, word)
    else:
        data = _strings(column, values, word)
    if not column.categories:
        return pd.Series(data, dtype=object, copy=False).astype("category")
    dtype = pd.CategoricalDtype(list(column.categories))
    # Values the model never saw become missing, as they are to the fitted model.
    codes = dtype.categories.get_indexer(pd.Index(data, dtype=object))
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), copy=False)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _show(value: Any) -> str:
    return shorten(json.dumps(value, default=str))


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."
