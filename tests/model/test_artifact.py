"""model.tar.gz: reproducible bytes, layout, safe unpacking, clear errors, loads in serving."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from model.artifact import (
    ArtifactError,
    list_members,
    load_model_archive,
    unpack_model_archive,
    write_archive_bytes,
    write_model_archive,
)
from model.data import generate_dataset
from model.train import build_metadata, train_model

REPO = Path(__file__).resolve().parents[2]

BUILD = """
import sys
from pathlib import Path
from model.artifact import write_model_archive
from model.data import generate_dataset
from model.train import build_metadata, train_model
data = generate_dataset(rows=2000, features=6, seed=11)
trained = train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)
write_model_archive(trained.pipeline, build_metadata(trained, seed=11), Path(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def trained():
    data = generate_dataset(rows=2000, features=6, seed=11)
    return data, train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_seed_gives_the_same_archive_bytes_across_processes(tmp_path):
    paths = [tmp_path / "model-1.tar.gz", tmp_path / "model-2.tar.gz"]
    builds = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(path)],
            env={**os.environ, "PYTHONHASHSEED": str(n)},
            cwd=REPO,
        )
        for n, path in enumerate(paths)
    ]
    assert [build.wait(timeout=120) for build in builds] == [0, 0]
    assert sha256(paths[0]) == sha256(paths[1])


def test_archive_holds_model_and_metadata_at_its_root(tmp_path, trained):
    data, model = trained
    path = write_model_archive(model.pipeline, build_metadata(model), tmp_path / "model.tar.gz")
    assert list_members(path) == ["metadata.json", "model.joblib"]
    with tarfile.open(path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {315532800}
        assert {(m.uid, m.gid, m.mode) for m in tar.getmembers()} == {(0, 0, 0o644)}
    loaded, metadata = load_model_archive(path)
    assert metadata["feature_count"] == 6
    np.testing.assert_array_equal(loaded.predict(data.x_eval), model.pipeline.predict(data.x_eval))


def test_archive_loads_in_the_serving_code(tmp_path, trained):
    from serving.inference import transform
    from serving.model_loading import load_model

    data, model = trained
    path = write_model_archive(model.pipeline, build_metadata(model), tmp_path / "model.tar.gz")
    loaded = load_model(unpack_model_archive(path, tmp_path / "unpacked"))
    assert loaded.feature_count == 6
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in data.x_eval[:50]).encode()
    answer, media_type = transform(loaded, body, "text/csv", None)
    assert media_type.startswith("text/csv")
    expected = [str(v) for v in model.pipeline.predict(data.x_eval[:50]).tolist()]
    assert answer.decode().split() == expected


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return gzip.compress(raw.getvalue())


def test_missing_archive(tmp_path):
    with pytest.raises(ArtifactError, match=r"model archive .*missing.tar.gz does not exist"):
        unpack_model_archive(tmp_path / "missing.tar.gz", tmp_path / "out")


@pytest.mark.parametrize(
    "content", [b"", b"this is not an archive", gzip.compress(b"not a tar" * 100)]
)
def test_corrupt_archive(tmp_path, content):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=r"(not a readable \.tar\.gz|is corrupt)"):
        unpack_model_archive(path, tmp_path / "out")


def test_truncated_archive(tmp_path, trained):
    _, model = trained
    good = write_model_archive(model.pipeline, build_metadata(model), tmp_path / "good.tar.gz")
    path = tmp_path / "model.tar.gz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=r"(not a readable \.tar\.gz|is corrupt)"):
        unpack_model_archive(path, tmp_path / "out")


def test_archive_without_model_joblib_at_its_root(tmp_path):
    path = write_archive_bytes(
        {"model/model.joblib": b"x", "metadata.json": b"{}"}, tmp_path / "m.tar.gz"
    )
    with pytest.raises(
        ArtifactError,
        match=r"has no model.joblib at its root \(found: metadata.json, model/model.joblib\)",
    ):
        unpack_model_archive(path, tmp_path / "out")


def test_dot_slash_names_are_at_the_root(tmp_path):
    path = tmp_path / "m.tar.gz"
    path.write_bytes(tar_gz([(tarfile.TarInfo("./model.joblib"), b"x")]))
    assert (unpack_model_archive(path, tmp_path / "out") / "model.joblib").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../evil", tarfile.REGTYPE, "points outside the model directory"),
        ("/etc/evil", tarfile.REGTYPE, "points outside the model directory"),
        ("link", tarfile.SYMTYPE, "holds a link"),
        ("dev", tarfile.CHRTYPE, "holds a special file"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, name, kind, message):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    path = tmp_path / "m.tar.gz"
    path.write_bytes(tar_gz([(tarfile.TarInfo("model.joblib"), b"x"), (info, b"data")]))
    with pytest.raises(ArtifactError, match=message):
        unpack_model_archive(path, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


DILL_SCRIPT = """
import pickle
import dill  # what Pulumi's Automation API imports: it extends pickle's Python pickler
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from model.artifact import dump_model

frame = pd.DataFrame({"city": ["Paris", "Lyon"] * 10, "age": range(20)})
columns = ColumnTransformer(
    [("c", OneHotEncoder(), ["city"]), ("n", StandardScaler(), ["age"])]
)  # its output_indices_ holds slices, which dill pickles as dill._dill._load_type
model = make_pipeline(columns, LogisticRegression()).fit(frame, [0, 1] * 10)
extended = dict(pickle._Pickler.dispatch)
data = dump_model(model)
assert b"dill" not in data, "the dump needs dill to load"
assert pickle._Pickler.dispatch == extended, "dill's extension was not restored"
print("ok")
"""


def test_a_model_dumped_after_dill_was_imported_loads_without_dill():
    done = subprocess.run(
        [sys.executable, "-c", DILL_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
