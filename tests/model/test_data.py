"""Seeded data generation, the three-way split and the transform input on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.data import DataError, generate_dataset, write_transform_input
from model.errors import UserError
from model.pipeline import parse_class_balance


def test_same_seed_same_data_other_seed_other_data():
    first = generate_dataset(rows=1000, features=6, seed=3)
    again = generate_dataset(rows=1000, features=6, seed=3)
    other = generate_dataset(rows=1000, features=6, seed=4)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_transform, again.y_transform)
    assert not np.array_equal(first.x_train, other.x_train)


def test_split_sizes_and_feature_count():
    data = generate_dataset(rows=1000, features=7, eval_fraction=0.1, transform_fraction=0.3)
    assert (len(data.x_train), len(data.x_eval), len(data.x_transform)) == (600, 100, 300)
    assert data.feature_count == 7
    assert len(data.y_train) == 600


def test_class_balance_is_honoured():
    data = generate_dataset(rows=20000, features=5, class_balance=(0.9, 0.1), seed=1)
    labels = np.concatenate([data.y_train, data.y_eval, data.y_transform])
    assert labels.mean() == pytest.approx(0.1, abs=0.02)
    three = generate_dataset(rows=3000, features=6, class_balance=(0.2, 0.3, 0.5))
    assert set(three.y_train.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5", "at least two"),
        ("0.7,0.7", "sums to 1.4"),
        ("a,b", "use shares"),
        ("1,0", "between"),
    ],
)
def test_bad_class_balance_is_explained(text, message):
    with pytest.raises(UserError, match=message):
        parse_class_balance(text)


def test_too_few_rows_or_features_are_explained():
    with pytest.raises(DataError, match="--rows must be at least"):
        generate_dataset(rows=20, features=5)
    with pytest.raises(DataError, match="--features must be at least 2"):
        generate_dataset(rows=1000, features=1)


def test_transform_input_is_several_csv_files_with_labels_and_manifest(tmp_path):
    data = generate_dataset(rows=1000, features=4, seed=0)
    written = write_transform_input(data.x_transform, data.y_transform, tmp_path, files=3)
    assert written.files == ("part-0000.csv", "part-0001.csv", "part-0002.csv")
    manifest = json.loads(written.manifest.read_text())
    assert [f["rows"] for f in manifest["files"]] == [67, 67, 66]
    rows = np.vstack(
        [np.loadtxt(written.input_dir / name, delimiter=",") for name in written.files]
    )
    np.testing.assert_allclose(rows, data.x_transform, rtol=1e-5, atol=1e-6)
    labels = [
        int(v) for name in written.files for v in (written.labels_dir / name).read_text().split()
    ]
    assert labels == data.y_transform.tolist()
    with pytest.raises(DataError, match="--files 500 is more than"):
        write_transform_input(data.x_transform[:10], data.y_transform[:10], tmp_path, files=500)
