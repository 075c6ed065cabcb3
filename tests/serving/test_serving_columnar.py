"""Parquet and NPY requests, Parquet answers, and values JSON and CSV cannot spell.

In-process through `serving.inference.transform` (the code the HTTP layer
runs), plus a real `serve` subprocess to prove Parquet works in forked workers.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from servingkit import FEATURES, training_data

from serving import columnar
from serving.codecs import encode
from serving.errors import ModelError, RequestError
from serving.inference import transform
from serving.negotiation import Format

PARQUET = "application/x-parquet"
NPY = "application/x-npy"
CSV = "text/csv"


def rows(count: int = 50, seed: int = 7) -> np.ndarray:
    x, _ = training_data(rows=count, seed=seed)
    return x


def csv_body(x: np.ndarray) -> bytes:
    return "\n".join(",".join(map(repr, row)) for row in x.tolist()).encode()


def parquet_body(columns: dict) -> bytes:
    sink = io.BytesIO()
    pl.DataFrame(columns).write_parquet(sink)
    return sink.getvalue()


def npy_body(array: np.ndarray, **kwargs) -> bytes:
    sink = io.BytesIO()
    np.save(sink, array, **kwargs)
    return sink.getvalue()


def refused(model, body: bytes, content_type: str, accept: str | None = None) -> RequestError:
    with pytest.raises(RequestError) as caught:
        transform(model, body, content_type, accept)
    return caught.value


# ------------------------------------------------------------------- Parquet in


def test_parquet_into_an_array_model_answers_as_csv_does(binary_model):
    x = rows()
    expected, _ = transform(binary_model, csv_body(x), CSV, CSV)
    # Any column names: a model fitted on a plain array takes columns in file order.
    body = parquet_body({f"whatever_{i}": x[:, i] for i in range(FEATURES)})
    answer, media = transform(binary_model, body, PARQUET, None)
    assert (answer, media) == (expected, "text/csv")  # no Accept: CSV, as Batch Transform reads


def test_parquet_integer_and_null_columns_become_floats(nan_model):
    x = rows()
    x[3, 1] = np.nan
    expected, _ = transform(nan_model, csv_body(x).replace(b"nan", b""), CSV, CSV)
    columns = {f"c{i}": pl.Series(x[:, i]).fill_nan(None) for i in range(FEATURES)}
    answer, _ = transform(nan_model, parquet_body(columns), PARQUET, CSV)
    assert answer == expected


def test_parquet_into_a_dataframe_model_matches_columns_by_name(multiclass_model):
    x = rows()
    expected, _ = transform(multiclass_model, csv_body(x), CSV, CSV)
    shuffled = {f"f{i}": x[:, i] for i in reversed(range(FEATURES))}
    answer, _ = transform(multiclass_model, parquet_body(shuffled), PARQUET, CSV)
    assert answer == expected


@pytest.mark.parametrize(
    ("columns", "fragments"),
    [
        ({"f0": [1.0], "f1": [1.0], "f2": [1.0]}, ["missing column 'f3'"]),
        ({"f0": [1.0], "f1": [1.0], "f2": [1.0], "f3": [1.0], "extra": [1.0]}, ["'extra'"]),
    ],
    ids=["missing", "unknown"],
)
def test_parquet_columns_must_match_the_models_names(multiclass_model, columns, fragments):
    error = refused(multiclass_model, parquet_body(columns), PARQUET)
    assert error.status == 400
    for fragment in fragments:
        assert fragment in error.message


def test_parquet_bad_files_get_a_clear_400(binary_model):
    good = parquet_body({f"c{i}": [1.0, 2.0] for i in range(FEATURES)})
    cases = {
        b"1,2,3,4\n": "not a Parquet file",
        good[: len(good) // 2] + b"PAR1": "unreadable Parquet file",
        b"PAR1" + b"\x00" * 40 + b"PAR1": "unreadable Parquet file",
        parquet_body({f"c{i}": [1.0] for i in range(3)}): "has 3 columns, expected 4",
        parquet_body({"a": [1.0], "b": [1.0], "c": ["x"], "d": [1.0]}): "column 'c' holds String",
        parquet_body({f"c{i}": pl.Series([], dtype=pl.Float64) for i in range(4)}): "no rows",
    }
    for body, fragment in cases.items():
        error = refused(binary_model, body, PARQUET)
        assert error.status == 400, error.message
        assert fragment in error.message
        assert "\n" not in error.message


def test_parquet_that_would_decode_too_large_is_refused_first(binary_model, monkeypatch):
    monkeypatch.setattr(columnar, "MAX_PARQUET_VALUES", 100)
    body = parquet_body({f"c{i}": np.zeros(26) for i in range(FEATURES)})  # 104 values
    error = refused(binary_model, body, PARQUET)
    assert error.status == 413
    assert "26 rows x 4 columns" in error.message
    assert transform(
        binary_model, parquet_body({f"c{i}": np.zeros(25) for i in range(4)}), PARQUET, CSV
    )


# ----------------------------------------------------------------------- NPY in


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_npy_answers_as_csv_does(binary_model, dtype):
    x = rows().astype(dtype)
    expected, _ = transform(binary_model, csv_body(x.astype(np.float64)), CSV, CSV)
    answer, media = transform(binary_model, npy_body(x), NPY, None)
    assert (answer, media) == (expected, "text/csv")


def test_npy_refuses_pickles_and_wrong_shapes(binary_model):
    objects = np.array([[1.0, "x", None, 2]], dtype=object)
    archive = io.BytesIO()
    np.savez(archive, a=np.ones((2, 4)))
    cases = {
        npy_body(objects, allow_pickle=True): "Python objects",
        archive.getvalue(): "NPZ archive",
        b"\x93NUMPY garbage": "not a valid NPY file",
        b"1,2,3,4": "not a valid NPY file",
        npy_body(np.ones(4)): "reshape(1, -1)",
        npy_body(np.ones((2, 2, 2))): "shape (2, 2, 2)",
        npy_body(np.ones((2, 3))): "3 columns, expected 4",
        npy_body(np.array([["a", "b", "c", "d"]])): "not numbers",
        npy_body(np.ones((0, 4))): "no rows",
        npy_body(np.ones((2, 4)))[:-8]: "NPY",
    }
    for body, fragment in cases.items():
        error = refused(binary_model, body, NPY)
        assert error.status == 400, error.message
        assert fragment in error.message, error.message


def test_npy_is_not_an_answer_format(binary_model):
    error = refused(binary_model, csv_body(rows(2)), CSV, NPY)
    assert error.status == 406
    assert "application/x-parquet" in error.message


# ------------------------------------------------------------------ Parquet out


def test_parquet_out_holds_what_csv_says(multiclass_model):
    x = rows()
    text, _ = transform(multiclass_model, csv_body(x), CSV, "text/csv; predict_proba=true")
    body, media = transform(multiclass_model, csv_body(x), CSV, f"{PARQUET}; predict_proba=true")
    assert media == PARQUET
    frame = pl.read_parquet(io.BytesIO(body))
    assert frame.columns == ["prediction", "probability_0", "probability_1", "probability_2"]
    expected = list(csv.reader(io.StringIO(text.decode())))
    assert frame["prediction"].to_list() == [row[0] for row in expected]
    for index in range(3):
        got = frame[f"probability_{index}"].to_list()
        assert got == [float(row[index + 1]) for row in expected]


def test_parquet_out_for_a_binary_model(binary_model):
    body, _ = transform(binary_model, csv_body(rows()), CSV, f"{PARQUET}; predict_proba=true")
    frame = pl.read_parquet(io.BytesIO(body))
    assert frame.columns == ["prediction", "probability"]
    assert frame["prediction"].dtype == pl.Int64
    assert frame.height == 50


# -------------------------------------------------- values JSON and CSV cannot spell


def test_non_finite_predictions_are_json_null_and_csv_round_trips():
    labels = np.array([1.5, math.nan, math.inf, -math.inf])
    probabilities = np.array([[0.5], [math.nan], [1.0], [math.inf]])

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))

    document = strict(encode(Format.JSON, labels, probabilities).decode())
    assert document == {"predictions": [[1.5, 0.5], [None, None], [None, 1.0], [None, None]]}
    lines = encode(Format.JSONLINES, labels, None).decode().split("\n")
    assert [strict(line) for line in lines] == [1.5, None, None, None]
    objects = np.array([1.5, float("nan"), "a"], dtype=object)
    assert strict(encode(Format.JSON, objects, None).decode()) == {"predictions": [1.5, None, "a"]}
    # CSV: nan / inf / -inf, which pandas (and polars, numpy, float()) read back exactly.
    text = encode(Format.CSV, labels, probabilities)
    back = pd.read_csv(io.BytesIO(text), header=None).to_numpy()
    np.testing.assert_array_equal(back, np.column_stack([labels, probabilities]))


def test_labels_with_commas_and_quotes_are_quoted_one_line_per_row():
    labels = np.array(["plain", 'quote "q", comma', "a,b"])
    text = encode(Format.CSV, labels, np.full((3, 1), 0.25)).decode()
    assert text.count("\n") == len(labels) - 1
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert [record[0] for record in records] == labels.tolist()
    assert all(record[1] == "0.25" for record in records)
    assert len(pd.read_csv(io.StringIO(text), header=None)) == len(labels)


@pytest.mark.parametrize("label", ["two\nlines", "carriage\rreturn", "crlf\r\n"])
def test_labels_with_line_breaks_are_refused_in_csv_and_kept_in_json_lines(label):
    """Batch Transform counts physical lines: a line break in a label would add a row."""
    labels = np.array(["plain", label])
    with pytest.raises(ModelError, match=r"holds a line break.*application/jsonlines"):
        encode(Format.CSV, labels, None)
    lines = encode(Format.JSONLINES, labels, None).decode().split("\n")
    assert [json.loads(line) for line in lines] == labels.tolist()


# ------------------------------------------------------------ real forked workers


def test_serve_workers_take_parquet_and_npy(binary_server):
    """polars runs in forked workers (the parent never ran it): no hang, same answers."""
    x = rows()
    client = binary_server.client
    expected = client.post("/invocations", content=csv_body(x), headers={"content-type": CSV})
    assert expected.status_code == 200
    for _ in range(4):  # reach both workers
        body = parquet_body({f"c{i}": x[:, i] for i in range(FEATURES)})
        got = client.post("/invocations", content=body, headers={"content-type": PARQUET})
        assert (got.status_code, got.content) == (200, expected.content)
        got = client.post("/invocations", content=npy_body(x), headers={"content-type": NPY})
        assert (got.status_code, got.content) == (200, expected.content)
        got = client.post(
            "/invocations", content=csv_body(x), headers={"content-type": CSV, "accept": PARQUET}
        )
        assert got.status_code == 200
        assert got.headers["content-type"].startswith(PARQUET)
        assert pl.read_parquet(io.BytesIO(got.content)).height == len(x)


def test_parquet_into_a_mixed_type_pipeline_predicts_as_in_process(tmp_path):
    """Strings, categoricals and nulls in Parquet reach a DataFrame pipeline as pandas would."""
    from servingkit import write_model
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from serving.model_loading import load_model

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 200),
            "city": rng.choice(["Paris", "Lyon", "Nice"], 200).astype(object),
            "plan": rng.choice(["free", "pro"], 200).astype(object),
        }
    )
    y = (frame["age"] > 40).astype(int) ^ (frame["city"] == "Lyon")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("text", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, y)
    loaded = load_model(write_model(tmp_path / "mixed", model, None))
    test = frame.head(20).copy()
    test.loc[3, "age"] = np.nan
    expected = "\n".join(map(str, model.predict(test).tolist())).encode()
    body = parquet_body(
        {
            "plan": pl.Series(test["plan"].tolist()).cast(pl.Categorical),
            "age": pl.Series(test["age"].tolist()),
            "city": test["city"].tolist(),
        }
    )
    answer, _ = transform(loaded, body, PARQUET, CSV)
    assert answer == expected


def test_a_parquet_body_over_the_size_limit_gets_413(binary_model):
    """The body limit holds for whole files too, before any decoding."""
    from servingkit import InProcessClient

    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings.from_env({"SERVING_MAX_BODY_MB": "0.01", "SERVING_WORKERS": "1"})
    client = InProcessClient(create_app(binary_model, settings))
    big = parquet_body({f"c{i}": rows(2000)[:, i] for i in range(FEATURES)})
    assert len(big) > 0.01 * 1024 * 1024
    response = client.post("/invocations", content=big, headers={"content-type": PARQUET})
    assert response.status_code == 413
    assert "SERVING_MAX_BODY_MB" in response.text
    small = parquet_body({f"c{i}": rows(5)[:, i] for i in range(FEATURES)})
    response = client.post("/invocations", content=small, headers={"content-type": PARQUET})
    assert response.status_code == 200
    assert response.text.count("\n") == 4
