"""Whole-file request and response formats: Parquet in and out, NPY in.

Batch Transform sends a Parquet file whole (`SplitType None`); NPY is what
AWS's scikit-learn container accepts besides CSV and JSON. The Parquet reader
and writer is polars, chosen by measuring read speed and image size side by
side (`bench/csv_decode.py --parquet`, `bench/image_size.py`): ~3x pyarrow's
and fastparquet's read speed per core on the bench's tables, and the same
library already parses CSV (`serving.csv_codec`), so Parquet adds nothing to
the image. NPY is read by numpy with `allow_pickle=False`: a request can never
make the server unpickle anything.

Into a model with named columns (fitted on a DataFrame), Parquet columns are
matched by name (`serving.frames` checks and converts them); into a model
fitted on a plain array, any Parquet of numeric columns with the right count
works, in file order.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.body import Body
from serving.csv_codec import polars_usable
from serving.errors import RequestError

if TYPE_CHECKING:
    import pandas as pd

    from serving.schema import InputSchema

import polars as pl

_PARQUET_MAGIC = b"PAR1"
# A Parquet file is compressed: refuse one that would decode to more values
# than this (a 100 MiB CSV holds ~7 million) before materialising it.
MAX_PARQUET_VALUES = 64 * 1024 * 1024
_NOT_PARQUET = (
    "body is not a Parquet file (it must start and end with the bytes PAR1); send one whole "
    "Parquet file per request (Batch Transform SplitType None)"
)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:197] + "...") if len(text) > 200 else text or type(exc).__name__


def _require_polars() -> None:
    if not polars_usable():
        raise RuntimeError(
            "Parquet needs polars, which this process cannot use after fork(): "
            "the server's parent must not read Parquet before forking workers"
        )


# ----------------------------------------------------------------------- Parquet


def decode_parquet(
    body: Body, feature_count: int | None, schema: InputSchema | None
) -> np.ndarray | pd.DataFrame:
    """Features from one Parquet file: by column name when the model has names."""
    frame = read_parquet(body.joined())
    if schema is not None:
        from serving import frames

        columns = {name: _values(frame.get_column(name)) for name in frame.columns}
        return frames.to_features(schema, frames.frame_from_columns(schema, columns, "row"))
    if feature_count is not None and frame.width != feature_count:
        raise RequestError(
            400,
            f"Parquet file has {frame.width} columns, expected {feature_count} "
            f"(one numeric column per feature, in the model's order)",
        )
    for name, dtype in frame.schema.items():
        if not dtype.is_numeric():
            raise RequestError(
                400,
                f"Parquet column {name!r} holds {dtype}, not numbers; this model takes "
                f"{frame.width if feature_count is None else feature_count} numeric columns",
            )
    return frame.cast(pl.Float64).to_numpy()


def read_parquet(data: bytes) -> pl.DataFrame:
    """A polars DataFrame from a whole Parquet file; 400 for anything unreadable."""
    if len(data) < 12 or not (data.startswith(_PARQUET_MAGIC) and data.endswith(_PARQUET_MAGIC)):
        raise RequestError(400, _NOT_PARQUET)
    _require_polars()
    try:
        columns = len(pl.read_parquet_schema(io.BytesIO(data)))
        rows = pl.scan_parquet(io.BytesIO(data)).select(pl.len()).collect().item()
    except Exception as exc:
        raise RequestError(400, f"unreadable Parquet file: {_first_line(exc)}") from None
    if not rows or not columns:
        raise RequestError(400, "Parquet file has no rows: send at least one row")
    if rows * columns > MAX_PARQUET_VALUES:
        raise RequestError(
            413,
            f"Parquet file decodes to {rows:,} rows x {columns:,} columns, more than the "
            f"{MAX_PARQUET_VALUES:,} values one request may hold; split it into smaller files",
        )
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise RequestError(400, f"unreadable Parquet file: {_first_line(exc)}") from None


def _values(series: pl.Series) -> np.ndarray:
    """One column as numpy: numbers as float64 (null = NaN), the rest as objects (None)."""
    if series.dtype.is_numeric():
        return series.cast(pl.Float64).to_numpy()
    if isinstance(series.dtype, pl.Categorical | pl.Enum):
        series = series.cast(pl.String)
    values = series.to_numpy()
    return values if values.dtype == object else values.astype(object)


def encode_parquet(labels: np.ndarray, probabilities: np.ndarray | None) -> bytes:
    """One Parquet file: `prediction` (or `prediction_0`... for several outputs), then
    `probability` (the positive class) or `probability_0`... (one per class)."""
    _require_polars()
    columns: dict[str, Any] = {}
    if labels.ndim == 2:
        for index in range(labels.shape[1]):
            columns[f"prediction_{index}"] = _column(labels[:, index])
    else:
        columns["prediction"] = _column(labels)
    if probabilities is not None:
        if probabilities.shape[1] == 1:
            columns["probability"] = probabilities[:, 0]
        else:
            for index in range(probabilities.shape[1]):
                columns[f"probability_{index}"] = probabilities[:, index]
    sink = io.BytesIO()
    pl.DataFrame(columns).write_parquet(sink)
    return sink.getvalue()


def _column(values: np.ndarray) -> Any:
    if values.dtype.kind in "iufb":
        return values
    return [None if value is None else str(value) for value in values.tolist()]


# --------------------------------------------------------------------------- NPY


def _not_npy(why: BaseException | str) -> str:
    reason = why if isinstance(why, str) else _first_line(why)
    return f"body is not a valid NPY file ({reason}); send numpy.save output"


def decode_npy(body: Body, feature_count: int | None) -> np.ndarray:
    """A 2-D numeric array saved with `numpy.save`: rows x features."""
    data = body.joined()
    if not data.startswith((b"\x93NUMPY", b"PK\x03\x04")):  # .npy, or an .npz (zip)
        raise RequestError(400, _not_npy("it must start with the bytes \\x93NUMPY"))
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise RequestError(
                400,
                "NPY array holds Python objects, which would need unpickling (refused); "
                "send a numeric array",
            ) from None
        raise RequestError(400, _not_npy(exc)) from None
    except Exception as exc:  # EOFError, OSError, UnpicklingError...: not an .npy file
        raise RequestError(400, _not_npy(exc)) from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise RequestError(400, "body is an NPZ archive; send one array saved with numpy.save")
    if array.ndim != 2:
        hint = " (for one row: array.reshape(1, -1))" if array.ndim == 1 else ""
        raise RequestError(
            400,
            f"NPY array has shape {array.shape}; send a 2-D array of rows x features{hint}",
        )
    if array.dtype.kind not in "iuf":
        raise RequestError(
            400, f"NPY array holds {array.dtype} values, not numbers; send a numeric array"
        )
    rows, columns = array.shape
    if not rows:
        raise RequestError(400, "NPY array has no rows: send at least one row")
    if feature_count is not None and columns != feature_count:
        raise RequestError(400, f"NPY array has {columns} columns, expected {feature_count}")
    return np.asarray(array, dtype=np.float64)
