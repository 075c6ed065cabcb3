"""The README's long commands, run for real (slow): the local job as written, the local
transform on its output, and its report.html rendered by headless Chromium.

Why: the fast set runs these at ``--help`` level; this is the proof that the first
command a newcomer types finishes, leaves the run directory the README describes,
and that the report it prints the path of actually renders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .readme import ROOT, bash_blocks, reader_env, run_block

pytestmark = pytest.mark.slow

RUN_DIRECTORY_FILES = [
    "input",
    "labels",
    "manifest.json",
    "model",
    "model.tar.gz",
    "output",
    "report.html",
    "serve.log",
    "summary.json",
]
WINDOW = (1200, 1600)


def _readme_command(pattern: str) -> str:
    found = [c for b in bash_blocks() for c in b.commands if re.search(pattern, c)]
    assert len(found) == 1, f"README.md should have exactly one command matching {pattern!r}"
    return found[0]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader's working directory: the clone's scripts/, uv finding the project."""
    directory = tmp_path_factory.mktemp("reader")
    (directory / "scripts").symlink_to(ROOT / "scripts")
    return directory


@pytest.fixture(scope="module")
def local_job(scratch: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The README's first command, exactly as written; (its stdout, the run directory)."""
    command = _readme_command(r"scripts/train_and_transform\.py --local$")
    env = reader_env(tmp_path_factory.mktemp("env"))
    proc = run_block(command, scratch, env, timeout=600)
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    (run_dir,) = (scratch / "artifacts" / "local").iterdir()
    return proc.stdout, run_dir


def test_local_job_as_written_leaves_the_run_directory_the_readme_describes(
    local_job: tuple[str, Path],
) -> None:
    stdout, run_dir = local_job
    assert stdout.startswith("Batch transform (local): Completed")
    assert sorted(p.name for p in run_dir.iterdir()) == RUN_DIRECTORY_FILES
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in RUN_DIRECTORY_FILES:
        shown = f"`{name}/`" if (run_dir / name).is_dir() else f"`{name}`"
        assert f"| {shown} |" in readme, f"the README's run-directory table lacks {shown}"
    assert f"report         artifacts/local/{run_dir.name}/report.html" in stdout


def test_local_transform_command_on_the_jobs_output(
    local_job: tuple[str, Path], scratch: Path, tmp_path: Path
) -> None:
    _, run_dir = local_job
    command = _readme_command(r"scripts/local_transform\.py --model PATH/")
    concrete = command.replace("PATH/model.tar.gz", str(run_dir / "model.tar.gz"))
    concrete = concrete.replace("--input DIR", f"--input {run_dir / 'input'}")
    concrete = concrete.replace("--output DIR", f"--output {tmp_path / 'out'}")
    assert "PATH" not in concrete and " DIR" not in concrete

    proc = run_block(concrete + " --no-progress", scratch, reader_env(tmp_path), timeout=300)

    assert proc.returncode == 0, proc.stderr[-3000:]
    for out in (run_dir / "output").glob("*.out"):
        assert (tmp_path / "out" / out.name).read_bytes() == out.read_bytes()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no chromium: `sudo apt-get install -y chromium` (.ci/run does)"
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
    raise AssertionError  # unreachable


def test_report_renders_in_headless_chromium(local_job: tuple[str, Path], tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    _, run_dir = local_job
    chromium = _chromium()
    shot = tmp_path / "report.png"
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        (run_dir / "report.html").as_uri(),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]

    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    grey = image.convert("L")
    # A blank page (or one whose images failed) is nearly uniform white.
    assert ImageStat.Stat(grey).stddev[0] > 20, "the screenshot is (nearly) blank"
    # The plots are there: many saturated pixels (curve, matrix, histogram colours).
    hsv = np.asarray(image.convert("HSV"))
    saturated = int(((hsv[..., 1] > 80) & (hsv[..., 2] > 60)).sum())
    assert saturated > 0.005 * WINDOW[0] * WINDOW[1], f"only {saturated} coloured pixels"
