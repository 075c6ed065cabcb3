"""Tables, DataFrame models and request encodings for the DataFrame serving tests.

Imported by name (like servingkit): test_serving_dataframe.py checks every
model kind and format in-process, test_serving_dataframe_http.py over HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

NUMBERS = ["age", "income", "visits"]
TEXTS = ["city", "plan"]
COLUMNS = ["age", "city", "income", "plan", "visits"]  # numbers and strings interleaved
CITIES = ["Paris", "Lyon", "Nice", "Saint-Étienne, FR", 'Le "Havre"']
PLANS = ["basic", "pro", "team"]
JSON_PROBA = "application/json; predict_proba=true"


def table(rows: int, seed: int, *, missing: Any = np.nan) -> pd.DataFrame:
    """Synthetic customers: numbers, strings (one with a comma, one with quotes), gaps."""
    rng = np.random.default_rng(seed)
    text = object if missing is None else "str"  # pandas' own string dtype unless None
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "city": pd.Series(rng.choice(CITIES, rows), dtype=text),
            "income": rng.normal(50_000, 12_000, rows).round(2),
            "plan": pd.Series(rng.choice(PLANS, rows), dtype=text),
            "visits": rng.poisson(3, rows).astype(float),
        }
    )
    for column in COLUMNS:
        gaps = rng.random(rows) < 0.1
        frame.loc[gaps, column] = missing if column in TEXTS else np.nan
    return frame


def labels_for(frame: pd.DataFrame) -> np.ndarray:
    score = frame["income"].fillna(50_000) / 10_000 + frame["city"].isin(["Paris", "Nice"]) * 2
    return np.where(score + (frame["plan"] == "pro") > 6.5, "yes", "no")


def request_table(*, missing: Any = np.nan, unseen: bool = True) -> pd.DataFrame:
    """12 rows to predict: every column has a gap, and one city the model never saw."""
    frame = table(12, seed=99, missing=missing)
    frame.loc[0, "age"] = np.nan
    frame.loc[1, "city"] = missing
    frame.loc[2, "plan"] = missing
    frame.loc[3, "income"] = np.nan
    if unseen:
        frame.loc[4, "city"] = "Marseille"
    return frame


def numeric_steps():
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


def onehot_model() -> tuple[Any, pd.DataFrame]:
    encode = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    transformer = ColumnTransformer(
        [("text", encode, TEXTS), ("numbers", numeric_steps(), NUMBERS)]
    )
    return make_pipeline(transformer, LogisticRegression(max_iter=1000)), request_table()


def ordinal_model() -> tuple[Any, pd.DataFrame]:
    encode = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="unknown"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    transformer = ColumnTransformer(
        [("text", encode, TEXTS), ("numbers", SimpleImputer(), NUMBERS)]
    )
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    return make_pipeline(transformer, forest), request_table()


def target_model() -> tuple[Any, pd.DataFrame]:
    transformer = ColumnTransformer(
        [("text", TargetEncoder(), TEXTS), ("numbers", numeric_steps(), NUMBERS)]
    )
    return make_pipeline(transformer, LogisticRegression(max_iter=1000)), request_table()


def boosting_model() -> tuple[Any, pd.DataFrame]:
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=20, min_samples_leaf=5, random_state=0
    )
    return model, as_categories(request_table())


def none_marker_model() -> tuple[Any, pd.DataFrame]:
    """Fitted on object columns where None (not NaN) marks a gap: None must come back."""
    transformer = ColumnTransformer(
        [("text", OneHotEncoder(), TEXTS), ("numbers", numeric_steps(), NUMBERS)]
    )
    return make_pipeline(transformer, LogisticRegression(max_iter=1000)), request_table(
        missing=None, unseen=False
    )


def as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({name: "category" for name in TEXTS})


KINDS: dict[str, Callable[[], tuple[Any, pd.DataFrame]]] = {
    "onehot": onehot_model,
    "ordinal": ordinal_model,
    "target": target_model,
    "boosting": boosting_model,
    "none_marker": none_marker_model,
}


def fit(kind: str) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """(fitted model, its training frame, the request frame)."""
    model, request = KINDS[kind]()
    train = table(300, seed=1, missing=None if kind == "none_marker" else np.nan)
    if kind == "boosting":
        train = as_categories(train)
    elif kind == "none_marker":
        train = train.astype({name: object for name in TEXTS})
        request = request.astype({name: object for name in TEXTS})
    model.fit(train, labels_for(train))
    return model, train, request


# ------------------------------------------------------------------ encodings


def plain(value: Any) -> Any:
    """A frame cell as JSON writes it (None for a gap)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def rows(frame: pd.DataFrame) -> list[list[Any]]:
    return [[plain(v) for v in row] for row in frame.astype(object).itertuples(index=False)]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(frame.columns, row, strict=True)) for row in rows(frame)]


def csv_body(frame: pd.DataFrame) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows(frame):
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return out.getvalue().encode()


def parquet_body(frame: pd.DataFrame) -> bytes:
    """A whole Parquet file: numbers as Float64, strings (and categories) as String."""
    import polars as pl

    schema = {name: pl.Float64 if name in NUMBERS else pl.String for name in frame.columns}
    table = pl.DataFrame(
        {name: [row[i] for row in rows(frame)] for i, name in enumerate(schema)}, schema=schema
    )
    out = io.BytesIO()
    table.write_parquet(out)
    return out.getvalue()


def bodies(frame: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """The same rows in every accepted shape: name -> (body, content type)."""
    lines = "\n".join
    return {
        "csv": (csv_body(frame), "text/csv"),
        "json records": (json.dumps({"instances": records(frame)}).encode(), "application/json"),
        "json bare records": (json.dumps(records(frame)).encode(), "application/json"),
        "json rows": (json.dumps({"instances": rows(frame)}).encode(), "application/json"),
        "json split": (
            json.dumps({"columns": list(frame.columns), "data": rows(frame)}).encode(),
            "application/json",
        ),
        "jsonlines objects": (
            lines(json.dumps(r) for r in records(frame)).encode(),
            "application/jsonlines",
        ),
        "jsonlines arrays": (
            lines(json.dumps(r) for r in rows(frame)).encode(),
            "application/jsonlines",
        ),
        "parquet": (parquet_body(frame), "application/x-parquet"),
    }


def expected_json(model: Any, frame: pd.DataFrame) -> list[list[Any]]:
    labels = model.predict(frame).tolist()
    positive = model.predict_proba(frame)[:, 1].tolist()
    return [[label, p] for label, p in zip(labels, positive, strict=True)]
