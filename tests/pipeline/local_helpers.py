"""Helpers for the local Batch Transform tests: input files, runs, leftovers, processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_server import FakeModelServer

from model.batch.params import TransformJobParameters, resolve
from model.batch.runner import TransformResult, discover_inputs, run_batch_transform


def write_lines(path: Path, lines: list[str], *, end: str = "\n") -> Path:
    """A CSV file holding ``lines`` (created with its parent directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + end for line in lines))
    return path


def transform(
    server: FakeModelServer,
    input_dir: Path,
    output_dir: Path,
    *,
    offered: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **job: Any,
) -> TransformResult:
    """Resolve ``job`` against ``offered`` execution parameters and run the runner."""
    parameters = resolve(TransformJobParameters(**job), offered)
    files = discover_inputs(input_dir, output_dir)
    return run_batch_transform(
        "127.0.0.1", server.port, files, output_dir, parameters, on_progress=on_progress
    )


def leftovers(directory: Path) -> list[str]:
    """Temporary files anywhere under ``directory`` (there must never be any after a run)."""
    return sorted(str(p) for p in directory.rglob("*.tmp"))


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds ``LOCAL_TEST_MARKER=<marker>``.

    The tests pass that variable to the model server (``--env``), so every ``serve``
    process and worker they start can be found, whatever its command line.
    """
    needle = f"LOCAL_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def no_processes_with_marker(marker: str, within: float = 10.0) -> bool:
    """True once no process carries the marker (waits for in-progress exits)."""
    deadline = time.monotonic() + within
    while processes_with_marker(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
