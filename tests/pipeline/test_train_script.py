"""scripts/train_and_transform.py's own checks: every refusal is one line, exit 1, no run dir.

In-process through the script's ``main`` (the same code path as the command line,
without a new interpreter per case); one subprocess case checks the real exit
status and stderr.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_and_transform.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_and_transform_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = 400
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "city": rng.choice(["Paris", "Lyon"], rows),
            "churn": rng.choice(["yes", "no"], rows),
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


CASES = {
    "rows-10": (["--rows", "10"], "--rows must be at least 100 for these splits"),
    "fractions": (
        ["--eval-fraction", "0.5", "--transform-fraction", "0.5"],
        "leave no rows for training",
    ),
    "eval-fraction-0": (["--eval-fraction", "0"], "fractions must be between 0 and 1"),
    "files-0": (["--files", "0"], "--files must be at least 1"),
    "files-too-many": (["--rows", "200", "--files", "100"], "--files 100 is more than the 40"),
    "target-alone": (["--target", "churn"], "--target names the label column of --data PATH"),
    "data-alone": (["--data", "{table}"], "needs --target COLUMN"),
    "data-and-rows": (["--data", "{table}", "--target", "churn", "--rows", "500"], "--rows"),
    "missing-file": (["--data", "{tmp}/nope.csv", "--target", "y"], "nope.csv does not exist"),
    "empty-file": (["--data", "{tmp}/empty.csv", "--target", "y"], "empty.csv is empty"),
    "missing-target": (
        ["--data", "{table}", "--target", "label"],
        "target column 'label' is not in",
    ),
    "one-class": (["--data", "{tmp}/one.csv", "--target", "churn"], "has one class ('yes')"),
    "all-missing": (
        ["--data", "{tmp}/gap.csv", "--target", "churn"],
        "column(s) 'notes' of",
    ),
}


@pytest.mark.parametrize(("extra", "fragment"), CASES.values(), ids=CASES.keys())
def test_bad_data_and_settings_stop_before_the_run_directory_exists(
    script, table, tmp_path, monkeypatch, capsys, extra, fragment
):
    (tmp_path / "empty.csv").write_bytes(b"")
    frame = pd.read_csv(table)
    frame.assign(churn="yes").to_csv(tmp_path / "one.csv", index=False)
    frame.assign(notes=np.nan).to_csv(tmp_path / "gap.csv", index=False)
    monkeypatch.chdir(tmp_path)  # the default run directory would be artifacts/local/...
    args = [a.format(table=table, tmp=tmp_path) for a in extra]
    workdir = tmp_path / "run"
    assert script.main(["--local", "--no-progress", "--workdir", str(workdir), *args]) == 1
    assert fragment in one_line_error(capsys)
    assert not workdir.exists()
    assert not (tmp_path / "artifacts").exists()


def test_rows_10_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--local", "--rows", "10", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: --rows must be at least 100 for these splits"
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no artifacts/local/<date-time> left behind


def test_server_log_is_a_local_option(script, tmp_path, capsys):
    parser = script.build_parser()
    args = parser.parse_args(["--local", "--server-log", str(tmp_path / "s.log")])
    assert args.server_log == tmp_path / "s.log"
    code = script.main(
        ["--stack", "dev", "--outputs-file", str(tmp_path / "o.json"), "--server-log", "x.log"]
    )
    assert code == 1
    assert "--server-log is for --local runs" in one_line_error(capsys)


def test_help_lists_the_new_options_and_the_exit_statuses(script):
    text = script.build_parser().format_help()
    for option in ("--data PATH", "--target COLUMN", "--server-log FILE", "--eval-fraction"):
        assert option in text
    assert "130 interrupted" in text and "143 terminated" in text


@pytest.mark.parametrize(
    ("signal_number", "status", "word"),
    [
        (signal.SIGTERM, 143, "terminated"),
        pytest.param(signal.SIGINT, 130, "interrupted", marks=pytest.mark.slow),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_the_documented_exit_status_on_a_signal(tmp_path, signal_number, status, word):
    """SIGTERM -> 143 and Ctrl-C -> 130 once serve is starting; serve is stopped either way."""
    from local_helpers import no_processes_with_marker, processes_with_marker

    marker = uuid.uuid4().hex
    command = [
        sys.executable, str(SCRIPT), "--local", "--rows", "2000", "--no-progress",
        "--workers", "1", "--workdir", str(tmp_path / "run"),
        "--env", f"LOCAL_TEST_MARKER={marker}",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        deadline = time.monotonic() + 180
        while not processes_with_marker(marker):  # serve is starting
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Not at the very instant of the fork: a KeyboardInterrupt raised inside the
        # parent's at-fork hooks is swallowed by Python ("Exception ignored in ...").
        time.sleep(0.5)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"{word}:")
    assert "Traceback" not in stderr
    assert no_processes_with_marker(marker)
