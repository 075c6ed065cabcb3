"""Models fitted on pandas DataFrames with numeric and string/categorical columns.

Each model kind (dataframekit) is fitted on a synthetic table (numbers,
strings, missing values), saved as a user would (model.joblib, mostly without
metadata), and must answer every request format exactly as it predicts
in-process on the same DataFrame; bad requests get a 400 naming the row and
the column. The same over HTTP, fuzzed and under load:
test_serving_dataframe_http.py.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dataframekit import (
    COLUMNS,
    JSON_PROBA,
    KINDS,
    NUMBERS,
    PLANS,
    TEXTS,
    bodies,
    csv_body,
    expected_json,
    fit,
    labels_for,
    plain,
    request_table,
    table,
)
from servingkit import write_model
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from model.artifact import describe_columns
from serving.errors import RequestError, StartupError
from serving.frames import frame_from_columns
from serving.inference import transform, warm_up
from serving.model_loading import LoadedModel, load_model
from serving.schema import Kind


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One native thread, as `serve` gives each worker (OpenMP on a busy machine crawls)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module", params=[*KINDS, "boosting+metadata"])
def fitted(request, tmp_path_factory) -> tuple[Any, LoadedModel, pd.DataFrame]:
    """Each kind saved as a user would (no metadata), the boosting one also with metadata."""
    kind = request.param.split("+")[0]
    model, train, frame = fit(kind)
    metadata = describe_columns(train) if request.param.endswith("metadata") else None
    directory = write_model(tmp_path_factory.mktemp(kind), model, metadata)
    return model, load_model(directory), frame


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("shape", list(bodies(request_table())))
def test_answers_equal_in_process_predictions(fitted, shape):
    model, loaded, frame = fitted
    body, content_type = bodies(frame)[shape]
    out, media = transform(loaded, body, content_type, JSON_PROBA)
    assert media == "application/json"
    assert json.loads(out)["predictions"] == expected_json(model, frame)


def test_csv_answer_holds_labels_and_probabilities(fitted):
    model, loaded, frame = fitted
    out, _ = transform(loaded, csv_body(frame), "text/csv", "text/csv; predict_proba=true")
    want = [f"{label},{p!r}" for label, p in expected_json(model, frame)]
    assert out.decode().split("\n") == want


def test_schema_comes_from_the_model(fitted):
    _, loaded, _ = fitted
    schema = loaded.schema
    assert schema is not None and schema.names == tuple(COLUMNS) and schema.needs_frame
    kinds = {column.name: column.kind for column in schema.columns}
    text_kind = (
        Kind.CATEGORY
        if isinstance(loaded.estimator, HistGradientBoostingClassifier)
        else Kind.STRING
    )
    assert kinds == {**dict.fromkeys(NUMBERS, Kind.NUMBER), **dict.fromkeys(TEXTS, text_kind)}


def test_warm_up_uses_a_valid_frame(fitted, caplog):
    _, loaded, _ = fitted
    with caplog.at_level(logging.WARNING, logger="serving"):
        warm_up(loaded)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_warm_up_sends_a_category_the_encoder_knows(tmp_path, caplog):
    """Imputer with a fill value the strict encoder never saw: warm-up must not send it."""
    train = table(100, seed=6).dropna()
    encode = make_pipeline(SimpleImputer(strategy="constant", fill_value="unseen"), OneHotEncoder())
    transformer = ColumnTransformer(
        [("text", encode, TEXTS), ("numbers", StandardScaler(), NUMBERS)]
    )
    model = make_pipeline(transformer, LogisticRegression(max_iter=1000))
    loaded = load_model(write_model(tmp_path, model.fit(train, labels_for(train)), None))
    with caplog.at_level(logging.WARNING, logger="serving"):
        warm_up(loaded)
    assert not caplog.records, caplog.text


def test_none_marker_model_gets_none_for_gaps():
    model, _, frame = fit("none_marker")
    built = frame_from_columns(
        load_schema(model), {name: [plain(v) for v in frame[name]] for name in COLUMNS}
    )
    assert built["city"].dtype == object and built.loc[1, "city"] is None
    assert built["age"].dtype == np.float64 and math.isnan(built.loc[0, "age"])


def load_schema(model: Any):
    from serving.schema import input_schema

    schema = input_schema(model, {}, "metadata.json")
    assert schema is not None
    return schema


def test_records_and_split_json_for_a_numeric_dataframe_model(multiclass_model):
    x = np.random.default_rng(5).normal(size=(6, 4))
    names = list(multiclass_model.feature_names_in)
    arrays, _ = transform(
        multiclass_model, json.dumps(x.tolist()).encode(), "application/json", None
    )
    shuffled = [dict(reversed(list(zip(names, row, strict=True)))) for row in x.tolist()]
    split = {"columns": names[::-1], "data": [row[::-1] for row in x.tolist()]}
    for document in (shuffled, {"columns": split["columns"], "data": split["data"]}):
        out, _ = transform(
            multiclass_model, json.dumps(document).encode(), "application/json", None
        )
        assert out == arrays


@pytest.mark.parametrize("with_metadata", [False, True], ids=["from values", "from metadata"])
def test_columns_the_model_does_not_describe(tmp_path, with_metadata):
    """Passed-through columns: metadata dtypes, else each request's own values, decide."""
    train = table(300, seed=4)
    transformer = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), TEXTS)], remainder="passthrough"
    )
    model = make_pipeline(transformer, HistGradientBoostingClassifier(max_iter=10))
    model.fit(train, labels_for(train))
    metadata = describe_columns(train) if with_metadata else None
    loaded = load_model(write_model(tmp_path, model, metadata))
    kinds = {column.name: column.kind for column in loaded.schema.columns}
    number = Kind.NUMBER if with_metadata else Kind.ANY
    assert kinds == {**dict.fromkeys(NUMBERS, number), **dict.fromkeys(TEXTS, Kind.STRING)}
    frame = request_table()
    for name in ("csv", "json records", "parquet"):
        body, content_type = bodies(frame)[name]
        out, _ = transform(loaded, body, content_type, JSON_PROBA)
        assert json.loads(out)["predictions"] == expected_json(model, frame), name
    warm_up(loaded)


def test_archive_metadata_carries_the_columns(tmp_path):
    from model.artifact import load_model_archive, write_model_archive

    model, train, _ = fit("boosting")
    described = describe_columns(train)
    assert described["feature_names"] == COLUMNS
    assert described["feature_dtypes"]["city"] == "category"
    assert described["feature_dtypes"]["age"] == "float64"
    assert described["feature_categories"]["plan"] == sorted(PLANS)
    _, metadata = load_model_archive(write_model_archive(model, {}, tmp_path / "model.tar.gz"))
    assert metadata["feature_names"] == COLUMNS  # from feature_names_in_ alone


def test_metadata_names_must_match_the_model(tmp_path):
    model, train, _ = fit("onehot")
    metadata = describe_columns(train)
    metadata["feature_names"] = list(reversed(metadata["feature_names"]))
    with pytest.raises(StartupError, match=r"feature_names .* differ"):
        load_model(write_model(tmp_path, model, metadata))


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def onehot(tmp_path_factory) -> LoadedModel:
    model, _, _ = fit("onehot")
    return load_model(write_model(tmp_path_factory.mktemp("onehot"), model, None))


GOOD = {"age": 1, "city": "Paris", "income": 2, "plan": "pro", "visits": 1}
CSV, JSON, JSONL = "text/csv", "application/json", "application/jsonlines"


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


BAD = {
    "csv header": (b"age,city,income,plan,visits\n40,Paris,1,pro,2\n", CSV, "line 1 is a header"),
    "csv text in number": (
        b"40,Paris,1,pro,2\nforty,Lyon,1,pro,2\n",
        CSV,
        "line 2, column 'age': 'forty' is not a number",
    ),
    "csv short row": (
        b"40,Paris,1,pro,2\n40,Paris,1,pro\n",
        CSV,
        "line 2 has 4 values, expected 5",
    ),
    "csv long row": (b"40,Paris,1,pro,2\n4,P,1,pro,2,9\n", CSV, "line 2 has 6 values, expected 5"),
    "csv open quote": (b'40,"Paris,1,pro,2\n40,Lyon,1,pro,2\n', CSV, "line 1"),
    "json missing column": (
        dumps([{k: v for k, v in GOOD.items() if k != "visits"}]),
        JSON,
        "row 1: missing column 'visits'",
    ),
    "json unknown column": (dumps([{**GOOD, "zip": 7}]), JSON, "row 1: unknown column 'zip'"),
    "json text in number": (
        dumps({"instances": [list(GOOD.values()), [1, "Paris", "2", "pro", 3]]}),
        JSON,
        "row 2, column 'income': \"2\" is not a number",
    ),
    "json boolean in number": (
        dumps([[1, "Paris", True, "pro", 3]]),
        JSON,
        "row 1, column 'income': true is not a number",
    ),
    "json list as text": (
        dumps([[1, ["Paris"], 2, "pro", 3]]),
        JSON,
        "row 1, column 'city': [\"Paris\"] is not text",
    ),
    "json mixed rows": (dumps([GOOD, list(GOOD.values())]), JSON, "row 2 is not an object"),
    "json split unknown": (
        dumps({"columns": [*COLUMNS[:-1], "nope"], "data": [list(GOOD.values())]}),
        JSON,
        "missing column 'visits'",
    ),
    "json short row": (dumps([[1, "Paris", 2, "pro"]]), JSON, "row 1 has 4 values, expected 5"),
    "jsonlines number": (
        dumps(GOOD) + b"\n" + dumps({**GOOD, "age": "x"}),
        JSONL,
        "line 2, column 'age': \"x\" is not a number",
    ),
    "empty": (b"\n", CSV, "empty body"),
}


@pytest.mark.parametrize(("body", "content_type", "message"), BAD.values(), ids=list(BAD))
def test_bad_input_is_a_400_naming_row_and_column(onehot, body, content_type, message):
    with pytest.raises(RequestError) as caught:
        transform(onehot, body, content_type, None)
    assert caught.value.status == 400
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_numeric_gap_the_model_cannot_take_is_named(tmp_path):
    train = table(200, seed=3).dropna()
    transformer = ColumnTransformer(
        [
            ("text", OneHotEncoder(handle_unknown="ignore"), TEXTS),
            ("numbers", StandardScaler(), NUMBERS),
        ]
    )  # no imputer: LogisticRegression refuses NaN
    model = make_pipeline(transformer, LogisticRegression()).fit(train, labels_for(train))
    loaded = load_model(write_model(tmp_path, model, None))
    with pytest.raises(RequestError, match="line 2, column 'income' is missing"):
        transform(loaded, b"40,Paris,1,pro,2\n40,Paris,,pro,2\n", "text/csv", None)
