"""Seeded data generation, the three-way split and the transform input on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.data import DataError, generate_dataset, write_transform_input
from model.errors import UserError
from model.pipeline import parse_class_balance
from model.storage import DiskFullError


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


def test_a_tables_transform_input_is_headerless_in_model_order_without_the_target(tmp_path):
    frame = pd.DataFrame(
        {
            "age": [40.5, np.nan, 31.0, 22.25],
            "city": ["Paris", "Nice, FR", np.nan, 'Q"uote'],
            "n": [1, 2, 3, 4],
        }
    )
    written = write_transform_input(frame, np.array(["yes", "no", "no", "yes"]), tmp_path, files=2)
    lines = [
        line
        for name in written.files
        for line in (written.input_dir / name).read_text().splitlines()
    ]
    assert lines == ["40.5,Paris,1", ',"Nice, FR",2', "31.0,,3", '22.25,"Q""uote",4']
    back = pd.concat([pd.read_csv(written.input_dir / name, header=None) for name in written.files])
    assert back.shape == (4, 3)  # quoting keeps the comma inside one field
    labels = [(written.labels_dir / n).read_text() for n in written.files]
    assert labels == ["yes\nno\n", "no\nyes\n"]


def test_too_many_files_is_refused_before_anything_is_written(tmp_path):
    data = generate_dataset(rows=1000, features=4, seed=0)
    with pytest.raises(DataError, match="--files 500 is more than the 10 transform rows"):
        write_transform_input(data.x_transform[:10], data.y_transform[:10], tmp_path, files=500)
    assert list(tmp_path.iterdir()) == []


# -- a full disk: a real 1 MiB tmpfs ------------------------------------------------------


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def big_transform_set() -> tuple[np.ndarray, np.ndarray]:
    data = generate_dataset(rows=60_000, features=20, seed=0)  # ~2.6 MiB of transform CSV
    return data.x_transform, data.y_transform


def test_full_disk_is_refused_up_front_with_nothing_written(full_disk):
    x, y = big_transform_set()
    with pytest.raises(DiskFullError) as caught:
        write_transform_input(x, y, full_disk / "run", files=4)
    message = str(caught.value)
    assert message.startswith(f"no space left on device in {full_disk / 'run'} (needed 2.")
    assert "MiB, 1024.0 KiB free)" in message or "MiB, 1.0 MiB free)" in message
    assert "choose another --workdir" in message
    assert files_under(full_disk) == []


def test_disk_filling_up_while_writing_leaves_nothing_half_written(full_disk, monkeypatch):
    """The up-front check is fooled (another process could fill the disk meanwhile):
    the real ENOSPC from the tmpfs must still end in one line and no partial file."""
    monkeypatch.setattr("model.data.check_free_space", lambda *args, **kwargs: None)
    x, y = big_transform_set()
    with pytest.raises(DiskFullError, match=r"no space left on device in .*needed 2\.\d MiB"):
        write_transform_input(x, y, full_disk / "run", files=4)
    assert files_under(full_disk) == []  # complete parts written before ENOSPC are removed too
    assert not (full_disk / "run" / "input").exists()


def test_archive_write_and_unpack_on_a_full_disk(full_disk, tmp_path):
    from model.artifact import unpack_model_archive, write_archive_bytes

    blob = np.random.default_rng(0).bytes(3 << 20)  # incompressible: the archive is ~3 MiB
    with pytest.raises(DiskFullError, match=f"no space left on device in {full_disk}"):
        write_archive_bytes({"model.joblib": blob}, full_disk / "model.tar.gz")
    assert files_under(full_disk) == []
    archive = write_archive_bytes({"model.joblib": blob}, tmp_path / "model.tar.gz")
    with pytest.raises(DiskFullError, match=r"needed 3\.0 MiB"):
        unpack_model_archive(archive, full_disk / "model")
    assert files_under(full_disk) == []  # the half-unpacked model.joblib is removed


def test_the_main_job_on_a_full_disk_says_so_in_one_line_and_leaves_nothing(full_disk, capsys):
    """``train_and_transform.py --local`` with its run directory on a full 1 MiB disk."""
    from model.console import run_main
    from model.pipeline import DataSettings, LocalRunConfig, run_local

    workdir = full_disk / "run"
    config = LocalRunConfig(data=DataSettings(rows=60_000), workdir=workdir, progress=False)
    assert run_main(lambda: run_local(config, log=lambda line: None) and 0) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: no space left on device in {workdir} (needed ")
    assert not workdir.exists()  # the run wrote nothing, so it leaves no directory
    assert files_under(full_disk) == []
