"""`train_and_transform.py --local --data TABLE --target COLUMN` end to end with the real `serve`.

A mixed-type table (numbers and text, both with gaps, a comma and a quote inside
text fields) is trained on, served and scored; the served predictions must be
exactly the pipeline's own on the same rows. The CSV run also proves
``--server-log``; the Parquet run (slow) proves the same for Parquet input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from local_helpers import leftovers, no_processes_with_marker

from model.artifact import load_model_archive
from model.data import read_transform_input

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "scripts" / "train_and_transform.py"
ROWS = 3000


def mixed_table(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(["Paris", "Lyon", "Nice, FR", 'Le "Port"'], rows).astype(object)
    plan = rng.choice(["basic", "pro", None], rows)
    income = rng.normal(50_000, 15_000, rows)
    signal = (
        0.04 * (np.nan_to_num(age, nan=50) - 50)
        + (income - 50_000) / 20_000
        + (city == "Paris")
        + 1.5 * (plan == "pro")
    )
    churn = np.where(signal + rng.normal(0, 0.5, rows) > 0.5, "yes", "no")
    return pd.DataFrame({"age": age, "city": city, "income": income, "plan": plan, "churn": churn})


def run(table: Path, workdir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, str]:
    marker = uuid.uuid4().hex
    command = [
        sys.executable, str(MAIN), "--local", "--data", str(table), "--target", "churn",
        "--files", "3", "--workdir", str(workdir), "--no-progress", "--workers", "1",
        "--env", f"LOCAL_TEST_MARKER={marker}", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    return result, marker


def check_run(result: subprocess.CompletedProcess, workdir: Path, marker: str) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Batch transform (local): Completed")
    assert "600 transformed from 3 files" in result.stdout
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["score"]["rows"] == 600
    assert summary["score"]["accuracy"] > 0.8
    model, metadata = load_model_archive(workdir / "model.tar.gz")
    assert metadata["feature_names"] == ["age", "city", "income", "plan"]
    assert metadata["feature_dtypes"]["city"] == "object"
    assert metadata["target"] == "churn" and metadata["class_labels"] == ["no", "yes"]
    assert list(model.feature_names_in_) == metadata["feature_names"]
    for part in sorted((workdir / "input").glob("part-*.csv")):
        rows = read_transform_input(part, metadata)
        expected = [str(label) for label in model.predict(rows).tolist()]
        assert (workdir / "output" / f"{part.name}.out").read_text().splitlines() == expected
    assert no_processes_with_marker(marker)
    assert leftovers(workdir) == []


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("table")
    table = base / "churn.csv"
    mixed_table().to_csv(table, index=False)
    log = base / "logs" / "serve.log"
    log.parent.mkdir()
    result, marker = run(table, base / "run", "--server-log", str(log))
    return base / "run", result, marker, log


def test_a_mixed_type_csv_is_trained_served_and_scored(csv_run):
    workdir, result, marker, _ = csv_run
    check_run(result, workdir, marker)
    assert "reading " in result.stderr and "target 'churn'" in result.stderr


def test_server_log_goes_where_asked(csv_run):
    workdir, result, _, log = csv_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.stat().st_size > 0
    assert f"server log     {log}" in result.stdout
    assert not (workdir / "serve.log").exists()


@pytest.mark.slow
def test_a_parquet_table_end_to_end(tmp_path):
    table = tmp_path / "churn.parquet"
    mixed_table(seed=1).to_parquet(table)
    result, marker = run(table, tmp_path / "run")
    check_run(result, tmp_path / "run", marker)
    assert (tmp_path / "run" / "serve.log").stat().st_size > 0  # the default log place
