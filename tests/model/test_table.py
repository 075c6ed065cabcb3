"""A user's own table as training data: reading CSV and Parquet, every refusal, the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.table import TableError, load_table_dataset, read_table

ROWS = 600


def mixed_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Numbers with gaps, text with gaps and awkward characters, a bool, a yes/no label."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(["Paris", "Lyon", "Nice, FR", 'Q"uote'], rows).astype(object)
    city[rng.random(rows) < 0.05] = None
    income = rng.normal(50_000, 15_000, rows)
    flag = rng.random(rows) < 0.5
    signal = 0.04 * (np.nan_to_num(age, nan=50) - 50) + (city == "Paris") + flag
    churn = np.where(signal + rng.normal(0, 0.5, rows) > 0.5, "yes", "no")
    return pd.DataFrame({"age": age, "city": city, "income": income, "flag": flag, "churn": churn})


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_give_the_same_typed_splits(tmp_path, suffix):
    path = write(mixed_frame(), tmp_path / f"table{suffix}")
    data = load_table_dataset(path, "churn", seed=3, files=2)
    sizes = (len(data.x_train), len(data.x_eval), len(data.x_transform))
    assert sizes == (360, 120, 120)
    assert list(data.x_train.columns) == ["age", "city", "income", "flag"]
    dtypes = {name: str(dtype) for name, dtype in data.x_train.dtypes.items()}
    assert dtypes == {"age": "float64", "city": "object", "income": "float64", "flag": "float64"}
    cities = data.x_train["city"]
    assert cities.isna().any()  # missing stays NaN, never the text "nan"/"None"
    assert set(cities.dropna()) <= {"Paris", "Lyon", "Nice, FR", 'Q"uote'}
    assert all(isinstance(v, str) for v in cities.dropna())
    assert set(data.y_train.tolist()) == {"yes", "no"}
    assert data.is_table and "target 'churn'" in (data.source or "")
    # stratified: each split keeps roughly the table's share of "yes"
    share = (mixed_frame()["churn"] == "yes").mean()
    for labels in (data.y_train, data.y_eval, data.y_transform):
        assert (labels == "yes").mean() == pytest.approx(share, abs=0.02)


def test_same_seed_same_split(tmp_path):
    path = write(mixed_frame(), tmp_path / "t.csv")
    first = load_table_dataset(path, "churn", seed=1)
    again = load_table_dataset(path, "churn", seed=1)
    other = load_table_dataset(path, "churn", seed=2)
    pd.testing.assert_frame_equal(first.x_transform, again.x_transform)
    assert not first.x_transform.equals(other.x_transform)


def test_rows_without_a_label_are_skipped_and_counted(tmp_path):
    frame = mixed_frame()
    frame.loc[:9, "churn"] = None
    data = load_table_dataset(write(frame, tmp_path / "t.csv"), "churn")
    assert len(data.x_train) + len(data.x_eval) + len(data.x_transform) == ROWS - 10
    assert "10 rows without a label skipped" in (data.source or "")


def test_integer_float_and_multiclass_labels(tmp_path):
    frame = mixed_frame()
    frame["churn"] = np.arange(ROWS) % 3 * 1.0  # 0.0, 1.0, 2.0: integral floats
    data = load_table_dataset(write(frame, tmp_path / "t.parquet"), "churn")
    assert data.y_train.dtype == np.int64
    assert sorted(set(data.y_train.tolist())) == [0, 1, 2]


def test_a_category_column_is_trained_as_text(tmp_path):
    frame = mixed_frame()
    frame["plan"] = pd.Categorical(np.where(np.arange(ROWS) % 2, "pro", "basic"))
    data = load_table_dataset(write(frame, tmp_path / "t.parquet"), "churn")
    assert str(data.x_train["plan"].dtype) == "object"
    assert set(data.x_train["plan"]) == {"pro", "basic"}


def bad(tmp_path: Path, frame: pd.DataFrame, suffix: str = ".csv") -> Path:
    return write(frame, tmp_path / f"bad{suffix}")


@pytest.mark.parametrize(
    ("make", "target", "fragments"),
    [
        (
            lambda f: f,
            "Churn",
            ["target column 'Churn' is not in", "did you mean 'churn'?", "'age', 'city'"],
        ),
        (lambda f: f.assign(churn="yes"), "churn", ["has one class ('yes') in 600 rows"]),
        (lambda f: f.assign(churn=None), "churn", ["holds no values (all missing)"]),
        (lambda f: f.assign(notes=np.nan), "churn", ["column(s) 'notes'", "all missing"]),
        (
            lambda f: f.assign(score=np.linspace(0, 1, ROWS)),
            "score",
            ["holds non-integer numbers", "give a column of class labels"],
        ),
        (lambda f: f.assign(id=np.arange(ROWS)), "id", ["600 distinct values"]),
        (
            lambda f: f.assign(churn=np.where(f.churn == "yes", "y,es", "no")),
            "churn",
            ["label 'y,es'", "rename that class"],
        ),
        (lambda f: f.assign(city="a\nb"), "churn", ["'city'", "line break (data row 1)"]),
        (lambda f: f.assign(age=np.inf), "churn", ["'age'", "infinite values"]),
        (lambda f: f[["churn"]], "churn", ["only the target column 'churn'"]),
        (
            lambda f: pd.concat([f[f.churn == "yes"].head(2), f[f.churn == "no"].head(1)]),
            "churn",
            ["3 labelled rows: too few"],
        ),
    ],
    ids=[
        "missing-target", "one-class", "no-labels", "all-missing-column", "regression",
        "id-target", "comma-label", "line-break", "infinite", "no-features", "tiny",
    ],
)  # fmt: skip
def test_bad_tables_are_refused_in_one_line(tmp_path, make, target, fragments):
    path = bad(tmp_path, make(mixed_frame()))
    with pytest.raises(TableError) as caught:
        load_table_dataset(path, target)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_a_date_column_is_refused_with_its_type(tmp_path):
    frame = mixed_frame().assign(signed=pd.Timestamp("2024-01-01"))
    with pytest.raises(TableError, match=r"'signed' \(datetime64.*convert them"):
        load_table_dataset(bad(tmp_path, frame, ".parquet"), "churn")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b"\n\n", "is empty"),
        ("header.csv", b"a,b,churn\n", "has a header but no rows"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3,4\n", "is not a readable CSV"),
        ("latin1.csv", "a,b\ncafé,1\n".encode("latin-1"), "is not UTF-8 text"),
        ("broken.parquet", b"PAR1 not really", "is not a readable Parquet file"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TableError, match=fragment):
        read_table(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TableError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(TableError, match="is not a file"):
        read_table(tmp_path)


def test_parquet_is_recognised_by_its_magic_bytes(tmp_path):
    path = write(mixed_frame(), tmp_path / "t.parquet")
    renamed = path.rename(tmp_path / "table.data")
    assert list(read_table(renamed).columns) == ["age", "city", "income", "flag", "churn"]
