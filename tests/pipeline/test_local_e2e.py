"""`scripts/train_and_transform.py --local` end to end, in a subprocess, with the real `serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from local_helpers import leftovers, no_processes_with_marker

from model.artifact import load_model_archive, unpack_model_archive

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "scripts" / "train_and_transform.py"
STANDALONE = REPO / "scripts" / "local_transform.py"
HEAVY = ("numpy", "pandas", "scipy", "sklearn", "joblib")
CLOUD = ("boto3", "botocore", "sagemaker", "pulumi", "pulumi_aws", "moto")


def imported_modules(stderr: str) -> set[str]:
    """Top-level packages named in ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("e2e") / "run"
    marker = uuid.uuid4().hex
    command = [
        sys.executable, "-X", "importtime", str(MAIN), "--local",
        "--rows", "6000", "--files", "3", "--workdir", str(workdir),
        "--no-progress", "--workers", "1", "--env", f"LOCAL_TEST_MARKER={marker}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    return workdir, result, marker


def test_the_local_job_completes_and_prints_the_summary(local_run):
    workdir, result, _ = local_run
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("Batch transform (local): Completed")
    assert "1,200 transformed from 3 files" in out
    assert "on the transform output (" in out and "held-out labels" in out
    assert "ROC AUC" in out and "rows/s" in out and "model server ready in" in out
    assert str(workdir) in out
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "Completed"
    assert summary["score"]["rows"] == 1200
    assert summary["score"]["accuracy"] > 0.8


def test_predictions_are_identical_to_calling_the_model_in_process(local_run, tmp_path):
    from serving.inference import transform
    from serving.model_loading import load_model

    workdir, result, _ = local_run
    assert result.returncode == 0
    model, metadata = load_model_archive(workdir / "model.tar.gz")
    served = load_model(unpack_model_archive(workdir / "model.tar.gz", tmp_path / "model"))
    parts = sorted((workdir / "input").glob("part-*.csv"))
    assert len(parts) == 3
    for part in parts:
        written = (workdir / "output" / f"{part.name}.out").read_bytes()
        rows = np.loadtxt(part, delimiter=",", ndmin=2)
        expected = [str(label) for label in model.predict(rows).tolist()]
        assert written.decode().splitlines() == expected
        body, _ = transform(served, part.read_bytes(), "text/csv", None)
        # AssembleWith Line ends every answer with a newline.
        assert written == (body if body.endswith(b"\n") else body + b"\n")
    assert metadata["feature_count"] == 20


def test_local_mode_imports_nothing_from_the_cloud_stack(local_run):
    _, result, _ = local_run
    modules = imported_modules(result.stderr)
    assert "sklearn" in modules  # the import log is really there
    assert not modules & set(CLOUD)


def test_no_server_process_and_no_temporary_file_is_left(local_run):
    workdir, _, marker = local_run
    assert no_processes_with_marker(marker)
    assert leftovers(workdir) == []


@pytest.mark.parametrize(
    "script", [MAIN, STANDALONE], ids=["train_and_transform", "local_transform"]
)
def test_help_is_instant_and_imports_nothing_heavy(script):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0
    assert "MaxPayloadInMB" in result.stdout and "--max-payload-in-mb" in result.stdout
    assert not imported_modules(result.stderr) & set(HEAVY + CLOUD)


def test_a_non_empty_workdir_is_refused_without_touching_it(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, str(MAIN), "--local", "--workdir", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: run directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
