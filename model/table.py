"""A user's own table (CSV or Parquet) as training data: read, check, split.

``load_table_dataset`` turns ``--data PATH --target COLUMN`` into the same three
splits the generated data has, with the features kept as a DataFrame (names and
dtypes), so the trained pipeline has ``feature_names_in_`` and the server can
build DataFrames for it. Everything that would make training fail later, or
train something useless, is refused here with one line that names the file, the
column and what to do: nothing has been written yet at that point.

Column kinds: numbers (and booleans, as 0/1) are numeric; text and categories
are categorical, kept as Python strings with NaN for missing (the form
``SimpleImputer`` and ``OneHotEncoder`` expect). Dates and other types are
refused with the column named. The target is a class label: a column of
non-integer numbers (a regression target) is refused, as are labels the
headerless CSV output cannot carry back unchanged (commas, quotes, newlines).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types

from model.data import DataError, Dataset

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
PARQUET_MAGIC = b"PAR1"
MAX_CLASSES = 100  # more distinct labels than this: an id or a measurement, not a class
_SHOWN = 12  # column names listed in a message


class TableError(DataError):
    """The table cannot be used for training (named file, column and fix)."""


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_SHOWN])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > _SHOWN else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_parquet(path: Path) -> bool:
    """By suffix, or by the ``PAR1`` magic bytes for a Parquet file named otherwise."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def read_table(path: Path) -> pd.DataFrame:
    """The table at ``path`` (CSV with a header line, or Parquet); TableError if unusable."""
    if not path.exists():
        raise TableError(f"data file {path} does not exist")
    if not path.is_file():
        raise TableError(f"data file {path} is not a file; pass one CSV or Parquet file")
    if path.stat().st_size == 0:
        raise TableError(f"data file {path} is empty")
    frame = _read_parquet(path) if is_parquet(path) else _read_csv(path)
    if len(frame.columns) == 0:
        raise TableError(f"data file {path} has no columns")
    if len(frame) == 0:
        raise TableError(f"data file {path} has a header but no rows")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise TableError(
            f"reading Parquet ({path}) needs pyarrow: install the pipeline group "
            "(`uv sync --group pipeline`) or `pip install pyarrow`"
        ) from None
    except (OSError, ValueError, TypeError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise TableError(
            f"data file {path} is not a readable Parquet file ({_first_line(error)})"
        ) from None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise TableError(f"data file {path} is empty (no header line)") from None
    except UnicodeDecodeError as error:
        raise TableError(
            f"data file {path} is not UTF-8 text at byte {error.start}: is it a CSV? "
            f"(Parquet files are recognised by a {', '.join(PARQUET_SUFFIXES)} suffix)"
        ) from None
    except pd.errors.ParserError as error:
        raise TableError(f"data file {path} is not a readable CSV ({_first_line(error)})") from None
    except OSError as error:
        raise TableError(f"cannot read data file {path}: {error.strerror or error}") from None


def _target_column(frame: pd.DataFrame, target: str, path: Path) -> None:
    if target in frame.columns:
        return
    close = [c for c in frame.columns if c.strip().lower() == target.strip().lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TableError(
        f"target column {target!r} is not in {path}{hint}; its columns are: "
        f"{_names(list(frame.columns))}"
    )


def _as_text(column: pd.Series) -> pd.Series:
    """Object column of Python strings, NaN where missing (whatever marked it missing)."""
    present = column.notna()
    text = pd.Series(np.nan, index=column.index, dtype=object)
    text[present] = column[present].astype(object).map(str)
    return text


def _features(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Numeric columns as float/int, categorical ones as text; refuse what is neither."""
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        raise TableError(
            f"column(s) {_names(empty)} of {path} hold no values (all missing): drop them "
            "from the table"
        )
    columns: dict[str, pd.Series] = {}
    refused: list[str] = []
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if types.is_bool_dtype(dtype):
            columns[name] = column.astype("float64")
        elif types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype):
            extension = isinstance(dtype, pd.api.extensions.ExtensionDtype)
            column = column.astype("float64") if extension else column
            if np.isinf(column.to_numpy(dtype="float64", na_value=np.nan)).any():
                raise TableError(
                    f"column {name!r} of {path} holds infinite values: replace them "
                    "(or leave the field empty for missing)"
                )
            columns[name] = column
        elif isinstance(dtype, pd.CategoricalDtype) or types.is_string_dtype(dtype):
            text = _as_text(column)
            broken = text.str.contains("[\r\n]", regex=True, na=False)
            if broken.any():
                row = int(np.flatnonzero(broken.to_numpy())[0]) + 1
                raise TableError(
                    f"column {name!r} of {path} holds a line break (data row {row}): the "
                    "transform input is one row per line, so remove line breaks from text"
                )
            columns[name] = text
        else:
            refused.append(f"{name!r} ({dtype})")
    if refused:
        raise TableError(
            f"column(s) {', '.join(refused[:_SHOWN])} of {path} are neither numbers nor "
            "text: convert them (e.g. a date to a number of days) or drop them"
        )
    return pd.DataFrame(columns, index=frame.index)


def _labels(target: pd.Series, name: str, path: Path) -> np.ndarray:
    """Class labels as ints, bools or strings; TableError for what is not a class label."""
    dtype = target.dtype
    if types.is_bool_dtype(dtype):
        labels = target.astype(bool).to_numpy()
    elif types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype):
        values = target.astype("float64").to_numpy()
        bad = values[~(np.isfinite(values) & (values == np.round(values)))]
        if len(bad):
            raise TableError(
                f"target column {name!r} of {path} holds non-integer numbers (e.g. "
                f"{float(bad[0]):g}): this trains a classifier; give a column of class labels"
            )
        labels = values.astype(np.int64)
    elif isinstance(dtype, pd.CategoricalDtype) or types.is_string_dtype(dtype):
        labels = _as_text(target).to_numpy(dtype=object)
        bad = [str(v) for v in pd.unique(labels) if any(ch in str(v) for ch in ',"\r\n')]
        if bad:
            raise TableError(
                f"target column {name!r} of {path} has the label {bad[0]!r}: labels with "
                "commas, quotes or line breaks cannot be scored from the CSV output; rename "
                "that class"
            )
    else:
        raise TableError(
            f"target column {name!r} of {path} has type {dtype}: give a column of class labels"
        )
    classes = pd.unique(labels)
    if len(classes) < 2:
        raise TableError(
            f"target column {name!r} of {path} has one class ({classes[0]!r}) in "
            f"{len(labels):,} rows: a classifier needs at least two"
        )
    if len(classes) > MAX_CLASSES:
        raise TableError(
            f"target column {name!r} of {path} has {len(classes):,} distinct values (more "
            f"than {MAX_CLASSES}): is it an id or a measurement? give a column of class labels"
        )
    return labels


def _split(
    x: pd.DataFrame,
    y: np.ndarray,
    *,
    seed: int,
    eval_fraction: float,
    transform_fraction: float,
) -> Dataset:
    """Shuffled three-way split, stratified by label where every class has enough rows."""
    from sklearn.model_selection import train_test_split

    def split(
        features: pd.DataFrame, labels: np.ndarray, size: float
    ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
        try:
            return train_test_split(
                features, labels, test_size=size, random_state=seed, stratify=labels
            )
        except ValueError:  # a class too small to stratify: a plain shuffled split
            return train_test_split(features, labels, test_size=size, random_state=seed)

    rest_x, x_transform, rest_y, y_transform = split(x, y, transform_fraction)
    share = eval_fraction / (1 - transform_fraction)
    x_train, x_eval, y_train, y_eval = split(rest_x, rest_y, share)
    return Dataset(
        x_train=x_train.reset_index(drop=True),
        y_train=y_train,
        x_eval=x_eval.reset_index(drop=True),
        y_eval=y_eval,
        x_transform=x_transform.reset_index(drop=True),
        y_transform=y_transform,
    )


def check_fractions(eval_fraction: float, transform_fraction: float) -> None:
    """The same rule as for generated data: three non-empty shares."""
    if not 0 < eval_fraction < 1 or not 0 < transform_fraction < 1:
        raise DataError("the evaluation and transform fractions must be between 0 and 1")
    if eval_fraction + transform_fraction >= 1:
        raise DataError("the evaluation and transform fractions leave no rows for training")


def load_table_dataset(
    path: Path,
    target: str,
    *,
    seed: int = 42,
    eval_fraction: float = 0.2,
    transform_fraction: float = 0.2,
    files: int = 1,
) -> Dataset:
    """Read ``path``, check it, split it; the features stay a DataFrame in file order."""
    check_fractions(eval_fraction, transform_fraction)
    frame = read_table(path)
    frame.columns = [str(c) for c in frame.columns]
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise TableError(f"data file {path} has duplicate column names: {_names(duplicated)}")
    _target_column(frame, target, path)
    if len(frame.columns) < 2:
        raise TableError(f"data file {path} has only the target column {target!r}: no features")
    missing_target = frame[target].isna()
    if missing_target.all():
        raise TableError(f"target column {target!r} of {path} holds no values (all missing)")
    frame = frame.loc[~missing_target].reset_index(drop=True)
    y = _labels(frame[target], target, path)
    x = _features(frame.drop(columns=[target]), path)
    rows = len(x)
    n_transform = int(np.ceil(rows * transform_fraction))
    n_eval = int(np.ceil((rows - n_transform) * eval_fraction / (1 - transform_fraction)))
    if rows - n_transform - n_eval < 2 or n_eval < 1 or n_transform < files:
        raise TableError(
            f"data file {path} has {rows:,} labelled rows: too few for the training, "
            f"evaluation and transform splits ({files} transform file(s)); use a larger table"
        )
    dataset = _split(
        x, y, seed=seed, eval_fraction=eval_fraction, transform_fraction=transform_fraction
    )
    if len(pd.unique(dataset.y_train)) < 2:
        raise TableError(
            f"the training split of {path} ({len(dataset.y_train):,} rows) holds one class "
            "only: the table needs more rows of each class"
        )
    skipped = int(missing_target.sum())
    note = f", {skipped:,} rows without a label skipped" if skipped else ""
    return dataclasses.replace(dataset, source=f"{path} (target {target!r}{note})")


def load_transform_table(
    path: Path, target: str | None, feature_names: list[str] | None
) -> tuple[pd.DataFrame, np.ndarray | None, str]:
    """Rows of ``path`` for a user's own model: features, labels (with ``target``), source.

    The features are ``feature_names`` in that order (the model's metadata.json), or
    every column but the target; converted like training data, so an archive trained
    with ``--data`` reads them back as at fit time. Rows without a label are skipped.
    """
    frame = read_table(path)
    frame.columns = [str(c) for c in frame.columns]
    labels: np.ndarray | None = None
    note = ""
    if target is not None:
        _target_column(frame, target, path)
        missing_target = frame[target].isna()
        if missing_target.all():
            raise TableError(f"target column {target!r} of {path} holds no values (all missing)")
        frame = frame.loc[~missing_target].reset_index(drop=True)
        labels = _as_text(frame[target]).to_numpy(dtype=object)
        skipped = int(missing_target.sum())
        note = f", target {target!r}"
        if skipped:
            note += f", {skipped:,} rows without a label skipped"
    if feature_names:
        absent = [name for name in feature_names if name not in frame.columns]
        if absent:
            raise TableError(
                f"data file {path} lacks the model's feature column(s) {_names(absent)} "
                "(from its metadata.json feature_names)"
            )
        columns = list(feature_names)
    else:
        columns = [c for c in frame.columns if c != target]
    if not columns:
        raise TableError(f"data file {path} has no feature columns besides the target")
    return _features(frame[columns], path), labels, f"{path}{note}"
