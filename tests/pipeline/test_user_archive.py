"""``train_and_transform.py --model ARCHIVE --data PATH``: the user's own model.tar.gz.

Issue 11 part 2: an archive packed by ``model.artifact.pack_model`` (with ``code/``)
runs unchanged through the local job and the cloud path. The local case runs the
real ``serve`` (the user's inference.py included) and compares its output with the
same hooks called in-process; the cloud case checks under moto that the published
object is the archive byte for byte.
"""

# Fixtures are imported from cloud_fixtures (as in test_cloud_run.py).
# ruff: noqa: F811

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from cloud_fixtures import (
    BUCKET,
    REGION,
    dummy_aws,  # noqa: F401 - a fixture, used by name
    fake_transform,  # noqa: F401 - a fixture, used by name
    model_fixes,  # noqa: F401 - a fixture, used by name
    moto_stack,  # noqa: F401 - a fixture, used by name
    reader,
)
from sklearn.linear_model import LogisticRegression

from model.artifact import pack_model

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_and_transform.py"
FEATURES = ["a", "b", "c"]
INFERENCE = """\
import numpy as np


def predict_fn(input_data, model):
    return np.where(model.predict(input_data) == 1, "yes", "no")
"""


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_and_transform_user_archive", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_files(tmp_path: Path, *, with_target: bool = True) -> tuple[Path, Path, Any]:
    """A model fitted on numpy arrays, packed with code/inference.py; a table of new rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x[:120], y[:120])
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(INFERENCE)
    archive = pack_model(model, tmp_path / "model.tar.gz", code_dir=code)
    frame = pd.DataFrame(x[120:], columns=FEATURES)
    if with_target:  # the label column in the middle: it must be left out of the input
        frame.insert(1, "label", np.where(y[120:] == 1, "yes", "no"))
    table = tmp_path / "table.csv"
    frame.to_csv(table, index=False)
    return archive, table, model


def _in_process(model: Any, rows: np.ndarray, code: Path) -> list[str]:
    """What the user's hooks predict when called directly."""
    spec = importlib.util.spec_from_file_location("user_inference", code / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [str(value) for value in module.predict_fn(rows, model).tolist()]


def _outputs(workdir: Path) -> tuple[np.ndarray, list[str]]:
    """Every input row the run wrote and the first field of its output line."""
    manifest = json.loads((workdir / "manifest.json").read_text())
    rows, predicted = [], []
    for entry in manifest["files"]:
        rows.append(np.loadtxt(workdir / "input" / entry["input"], delimiter=",", ndmin=2))
        lines = (workdir / "output" / f"{entry['input']}.out").read_text().splitlines()
        predicted += [line.split(",", 1)[0] for line in lines]
    return np.concatenate(rows), predicted


@pytest.mark.slow  # starts the real model server (~10 s each on 2 cores)
@pytest.mark.parametrize("with_target", [True, False])
def test_local_run_uses_the_archive_and_its_inference_code(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], with_target: bool
) -> None:
    archive, table, model = _user_files(tmp_path, with_target=with_target)
    workdir = tmp_path / "run"
    argv = ["--local", "--model", str(archive), "--data", str(table)]
    argv += ["--target", "label"] if with_target else []
    code = script.main([*argv, "--workdir", str(workdir), "--no-progress", "--files", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (workdir / "model.tar.gz").read_bytes() == archive.read_bytes()
    assert (workdir / "model" / "code" / "inference.py").read_text() == INFERENCE
    rows, predicted = _outputs(workdir)
    expected_rows = pd.read_csv(table)[FEATURES].to_numpy()
    np.testing.assert_allclose(rows, expected_rows)  # every row, target left out, in order
    assert predicted == _in_process(model, expected_rows, tmp_path / "code")
    assert set(predicted) == {"yes", "no"}  # inference.py ran (the model predicts 0/1)
    assert "no training" in err
    summary = json.loads((workdir / "summary.json").read_text())
    if not with_target:
        assert summary["score"] is None and summary["rows"] == len(expected_rows)
        assert "scoring skipped" in err and not (workdir / "labels").exists()
        return
    labels = pd.read_csv(table)["label"].tolist()
    correct = sum(p == label for p, label in zip(predicted, labels, strict=True))
    assert summary["score"]["rows"] == len(labels)
    assert summary["score"]["correct"] == correct


def test_cloud_run_publishes_the_archive_unchanged(
    moto_stack, fake_transform, model_fixes, tmp_path, capsys
) -> None:
    from model.cloud.run import build_parser, run_cloud

    archive, table, model = _user_files(tmp_path, with_target=False)
    args = build_parser().parse_args(
        [
            *("--files", "3", "--poll-seconds", "1", "--workdir", str(tmp_path / "run")),
            *("--stack", "dev", "--model", str(archive), "--data", str(table)),
        ]
    )
    code = run_cloud(args, reader(moto_stack), ask=None)
    err = capsys.readouterr().err
    assert code == 0, err
    workdir = tmp_path / "run"
    state = json.loads((workdir / "run.json").read_text())
    key = f"runs/dev/{state['run_id']}/model/model.tar.gz"
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == archive.read_bytes()
    request = model_fixes.requests[state["model_name"]]
    assert request["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    # no --target: every row transformed, nothing scored, no labels written
    rows, predicted = _outputs(workdir)
    np.testing.assert_allclose(rows, pd.read_csv(table).to_numpy())
    assert predicted == [str(v) for v in model.predict(rows).tolist()]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary.get("score") is None
    assert summary["rows"] == len(rows) and summary["files"] == 3
    assert not (workdir / "labels").exists()
    assert "scoring skipped" in err


def test_feature_names_in_the_metadata_set_the_column_order(tmp_path: Path) -> None:
    from model.pipeline import DataSettings, prepare_dataset

    archive, table, _ = _user_files(tmp_path)
    ordered = pack_model(
        LogisticRegression().fit([[0, 0], [1, 1]], [0, 1]),
        tmp_path / "named.tar.gz",
        metadata={"feature_names": ["c", "a"]},
    )
    dataset = prepare_dataset(DataSettings(data=table, model=ordered, files=2))
    assert list(dataset.x_transform.columns) == ["c", "a"]
    assert dataset.y_transform is None
    with_target = prepare_dataset(DataSettings(data=table, target="label", model=archive))
    assert list(with_target.x_transform.columns) == FEATURES
    assert len(with_target.y_transform) == len(with_target.x_transform) == 120


def _bad_archive(tmp_path: Path) -> Path:
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"not a tar")
    return path


REFUSALS = {
    "no data": (["--model", "{archive}"], "--model {archive} needs --data PATH"),
    "unreadable archive": (
        ["--model", "{broken}", "--data", "{table}"],
        "model archive {broken} is not a readable .tar.gz",
    ),
    "missing archive": (
        ["--model", "{tmp}/nope.tar.gz", "--data", "{table}"],
        "model archive {tmp}/nope.tar.gz does not exist",
    ),
    "rows": (
        ["--model", "{archive}", "--data", "{table}", "--rows", "500"],
        "--rows shape(s) generated training data; leave them out with --model",
    ),
    "features": (
        ["--model", "{archive}", "--data", "{table}", "--features", "3"],
        "--features shape(s) generated training data; leave them out with --model",
    ),
    "missing feature column": (
        ["--model", "{named}", "--data", "{table}"],
        "data file {table} lacks the model's feature column(s) 'zz'",
    ),
}


@pytest.mark.parametrize("mode", ["--local", "--stack"])
@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line_and_leave_nothing(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, mode: str
) -> None:
    archive, table, _ = _user_files(tmp_path)
    named = pack_model(
        LogisticRegression().fit([[0], [1]], [0, 1]),
        tmp_path / "named.tar.gz",
        metadata={"feature_names": ["zz"]},
    )
    values = {
        "archive": archive,
        "broken": _bad_archive(tmp_path),
        "table": table,
        "tmp": tmp_path,
        "named": named,
    }
    argv, expected = REFUSALS[case]
    argv = [arg.format(**values) for arg in argv]
    workdir = tmp_path / "run"
    extra = ["--outputs-file", str(tmp_path / "outputs.json")] if mode == "--stack" else [mode]
    assert script.main([*argv, *extra, "--workdir", str(workdir)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: " + expected.format(**values)), errors[0]
    assert not workdir.exists()
