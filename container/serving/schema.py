"""The model's input schema: which columns it takes, in which order, of which kind.

A model fitted on a pandas DataFrame must get a DataFrame with the same
columns back, and each column in a form its first consumer accepts: numbers
for a scaler, strings for an encoder fitted on strings, the `category` dtype
for `HistGradientBoosting*(categorical_features="from_dtype")`. The schema
comes, most trusted first, from

1. `metadata.json` (`feature_names`, `feature_dtypes`, `feature_categories`,
   as `model.artifact.describe_columns` writes them when the project trains);
2. the fitted model: `feature_names_in_` for the names, and for each column the
   step that receives it (walking Pipeline, ColumnTransformer and FeatureUnion
   through their fitted attributes): an encoder's `categories_` say strings
   or numbers (and whether `None` or NaN stood for missing), a SimpleImputer's
   `statistics_` and `missing_values` the same, `is_categorical_` the
   HistGradientBoosting categorical columns, and any other plain scikit-learn
   estimator takes numbers;
3. failing both, the request itself: a column whose every value parses as a
   number is numeric, any other is kept as strings (`Kind.ANY`).

A model fitted on a plain array has no names: `input_schema` returns None and
the numeric matrix path stays exactly as it was.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from serving.errors import StartupError


class Kind(enum.Enum):
    """What a column holds, as the model needs it."""

    NUMBER = "number"  # float64, NaN for missing
    STRING = "string"  # Python str in an object column, `Column.missing` for missing
    CATEGORY = "category"  # pandas `category` dtype (HistGradientBoosting from_dtype)
    ANY = "any"  # unknown: numbers when every value parses as one, else strings


@dataclass(frozen=True)
class Column:
    """One input column.

    `missing` is what stands for an empty value (NaN, or None when the model's
    encoder was fitted with None: the two are different categories to it).
    `categories` are the values the model knows, when it says: the fitted
    categories of a `category` column, or an encoder's (used for warm-up).
    """

    name: str
    kind: Kind
    missing: Any = math.nan
    categories: tuple[Any, ...] | None = None

    @property
    def numeric_categories(self) -> bool:
        """Categories fitted on numbers: request values are parsed before matching."""
        return bool(self.categories) and all(_is_number(c) for c in self.categories or ())

    def sample(self) -> Any:
        """A value this model accepts in this column (for warm-up)."""
        if self.categories:
            return self.categories[0]
        return "a" if self.kind is Kind.STRING else 1.0


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes, in order, and where that knowledge came from."""

    columns: tuple[Column, ...]
    source: str  # e.g. "metadata.json" or "the fitted model", for messages
    # The estimator was fitted on a DataFrame (it has feature_names_in_).
    takes_frame: bool

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @cached_property
    def positions(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    @cached_property
    def needs_frame(self) -> bool:
        """True unless every column is a known number (then a float matrix does)."""
        return self.takes_frame and any(c.kind is not Kind.NUMBER for c in self.columns)

    def describe(self) -> str:
        """`age (number), city (string), ...` for messages and the start-up log."""
        return ", ".join(f"{c.name} ({c.kind.value})" for c in self.columns)


def input_schema(estimator: Any, metadata: Mapping[str, Any], where: str) -> InputSchema | None:
    """The schema of `estimator` (and its metadata.json), or None for a plain-array model.

    `where` names metadata.json in start-up errors.
    """
    fitted = getattr(estimator, "feature_names_in_", None)
    fitted_names = [str(name) for name in fitted] if fitted is not None else None
    declared = metadata.get("feature_names")
    if declared is not None:
        if not isinstance(declared, list) or not all(isinstance(n, str) for n in declared):
            raise StartupError(f"{where}: feature_names must be a list of strings")
        if fitted_names is not None and declared != fitted_names:
            raise StartupError(
                f"{where}: feature_names {_short(declared)} differ from the columns the model "
                f"was fitted on {_short(fitted_names)}; repackage the model"
            )
    names = fitted_names if fitted_names is not None else declared
    if not names:
        return None
    found = _from_model(estimator, names)
    dtypes = _mapping(metadata.get("feature_dtypes"), "feature_dtypes", where)
    categories = _mapping(metadata.get("feature_categories"), "feature_categories", where)
    columns = []
    for name in names:
        column = found.get(name, Column(name, Kind.ANY))
        if name in dtypes:
            column = _from_dtype(column, str(dtypes[name]), categories.get(name), where)
        if fitted_names is None and column.kind is not Kind.NUMBER:
            # Fitted on an array: the model only ever takes numbers.
            column = Column(name, Kind.NUMBER)
        columns.append(column)
    source = "metadata.json" if dtypes else "the fitted model"
    return InputSchema(tuple(columns), source, takes_frame=fitted_names is not None)


# ------------------------------------------------------------------ metadata


def _mapping(value: Any, key: str, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StartupError(f"{where}: {key} must be an object mapping column names to values")
    return value


def _from_dtype(column: Column, dtype: str, categories: Any, where: str) -> Column:
    """A column as metadata.json describes it (a pandas dtype name)."""
    text = dtype.lower()
    if text == "category":
        if categories is not None and not isinstance(categories, list):
            raise StartupError(f"{where}: feature_categories[{column.name!r}] must be a list")
        known = tuple(categories) if categories is not None else column.categories
        return Column(column.name, Kind.CATEGORY, math.nan, known)
    if text.startswith(("float", "int", "uint", "bool")):
        return Column(column.name, Kind.NUMBER)
    if text in {"object", "str", "string"} or text.startswith("string"):
        if column.kind is Kind.STRING:
            return column  # keep what the model says about missing values
        return Column(column.name, Kind.STRING, column.missing, column.categories)
    return column  # datetimes and the like: left to the model's own verdict


# --------------------------------------------------------------- the model


def _from_model(estimator: Any, names: list[str]) -> dict[str, Column]:
    """What the fitted estimator says about each of its input columns."""
    try:
        return _walk(estimator, names)
    except Exception:  # an exotic estimator: the request's own values will decide
        return {}


def _walk(step: Any, names: Sequence[str]) -> dict[str, Column]:
    """Columns as the step receiving `names` needs them (only those it says something about)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if step is None or isinstance(step, str):  # "drop", "passthrough"
        return {}
    if isinstance(step, Pipeline):
        inner = [s for _, s in step.steps if s is not None and not isinstance(s, str)]
        if not inner:
            return {}
        found = _walk(inner[0], names)
        if isinstance(inner[0], SimpleImputer) and len(inner) > 1:
            # Imputer then encoder: the imputer says what a gap is, the encoder which
            # values it knows (warm-up must send one of those).
            after = _walk(inner[1], names)
            for name, column in found.items():
                known = after.get(name)
                if known is not None and known.categories:
                    found[name] = Column(name, column.kind, column.missing, known.categories)
        return found
    if isinstance(step, ColumnTransformer):
        merged: dict[str, Column] = {}
        for _, inner, selection in getattr(step, "transformers_", []):
            _merge(merged, _walk(inner, _select(selection, names)))
        return merged
    if isinstance(step, FeatureUnion):
        merged = {}
        for _, inner in step.transformer_list:
            _merge(merged, _walk(inner, names))
        return merged
    if isinstance(step, SimpleImputer):
        return _from_imputer(step, names)
    if hasattr(step, "is_categorical_"):  # HistGradientBoosting*
        return _from_boosting(step, names)
    categories = getattr(step, "categories_", None)
    if categories is not None and len(categories) == len(names):  # One-hot/Ordinal/Target...
        return {
            name: _from_categories(name, cats) for name, cats in zip(names, categories, strict=True)
        }
    if _takes_numbers(step):
        return {name: Column(name, Kind.NUMBER) for name in names}
    return {}


def _select(selection: Any, names: Sequence[str]) -> list[str]:
    """Column names from a fitted ColumnTransformer's column selection."""
    if isinstance(selection, str | int):
        selection = [selection]
    if isinstance(selection, slice):
        if isinstance(selection.start, str) or isinstance(selection.stop, str):
            start = names.index(selection.start) if selection.start is not None else None
            stop = names.index(selection.stop) + 1 if selection.stop is not None else None
            return list(names[start:stop])
        return list(names[selection])
    items = list(selection)
    if not items:
        return []
    if all(isinstance(item, bool | np.bool_) for item in items):
        return [name for name, keep in zip(names, items, strict=True) if keep]
    return [names[int(item)] if not isinstance(item, str) else item for item in items]


def _merge(into: dict[str, Column], more: Mapping[str, Column]) -> None:
    """Two steps read the same column: a numeric reader needs numbers, so it wins."""
    for name, column in more.items():
        held = into.get(name)
        if held is None or held.kind is Kind.ANY or column.kind is Kind.NUMBER:
            into[name] = column if held is None or column.kind is not Kind.ANY else held


def _from_categories(name: str, categories: Any) -> Column:
    values = list(categories.tolist() if hasattr(categories, "tolist") else categories)
    known = tuple(v for v in values if not _is_missing(v))
    missing = None if any(v is None for v in values) else math.nan
    if known and all(_is_number(v) for v in known):
        return Column(name, Kind.NUMBER, math.nan, known)
    return Column(name, Kind.STRING, missing, known)


def _from_imputer(imputer: Any, names: Sequence[str]) -> dict[str, Column]:
    statistics = getattr(imputer, "statistics_", None)
    if statistics is None or len(statistics) != len(names):
        return {}
    marker = imputer.missing_values
    out = {}
    for name, value in zip(names, statistics.tolist(), strict=True):
        if isinstance(value, str):
            out[name] = Column(name, Kind.STRING, marker, (value,))
        elif statistics.dtype.kind in "iuf":
            out[name] = Column(name, Kind.NUMBER)
        # an object column imputed with a number (or nothing): unknown
    return out


def _from_boosting(model: Any, names: Sequence[str]) -> dict[str, Column]:
    mask = model.is_categorical_
    if mask is None:
        return {name: Column(name, Kind.NUMBER) for name in names}
    from_dtype = getattr(model, "categorical_features", None) == "from_dtype"
    fitted = _boosting_categories(model)
    out = {}
    for name, flag in zip(names, mask, strict=True):
        cats = fitted.get(name)
        if not flag:
            out[name] = Column(name, Kind.NUMBER)
        elif from_dtype:
            out[name] = Column(name, Kind.CATEGORY, math.nan, cats)
        elif cats is not None:
            out[name] = _from_categories(name, cats)
    return out


def _boosting_categories(model: Any) -> dict[str, tuple[Any, ...]]:
    """Fitted categories per column of a HistGradientBoosting model, when it shows them.

    Only the private `_preprocessor` (an OrdinalEncoder inside a
    ColumnTransformer) holds them; it tells numeric categories from string
    ones. Without it (another scikit-learn version) the request values are
    used as they come, which predicts the same for string categories.
    """
    preprocessor = getattr(model, "_preprocessor", None)
    if preprocessor is None:
        return {}
    names = [str(n) for n in model.feature_names_in_]
    found: dict[str, tuple[Any, ...]] = {}
    for _, inner, selection in getattr(preprocessor, "transformers_", []):
        categories = getattr(inner, "categories_", None)
        if categories is None:
            continue
        for name, cats in zip(_select(selection, names), categories, strict=True):
            found[name] = tuple(v for v in cats.tolist() if not _is_missing(v))
    return found


_META_PARAMETERS = frozenset(
    {"estimator", "estimators", "steps", "transformers", "transformer_list", "func"}
)


def _takes_numbers(step: Any) -> bool:
    """A plain scikit-learn estimator (not a meta-estimator) that validates to numbers."""
    if not type(step).__module__.startswith("sklearn."):
        return False
    if not callable(getattr(step, "get_params", None)):
        return False
    return not (_META_PARAMETERS & set(step.get_params(deep=False)))


# ------------------------------------------------------------------ helpers


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"
