"""`.ci/run` runs exactly the README's set-up, checks and test commands.

Why: CI once installed uv with a line the README's readers could not use; keeping
the two in step by hand failed. The commands are taken from README.md here.
"""

from __future__ import annotations

import re
import subprocess

from .readme import ROOT, bash_blocks, inline_commands

CI_RUN = ROOT / ".ci" / "run"


def _ci_lines() -> list[str]:
    lines = CI_RUN.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _readme_commands() -> list[str]:
    return [c for b in bash_blocks() for c in b.commands] + inline_commands()


def test_ci_runs_the_readme_test_and_check_commands_verbatim() -> None:
    wanted = [
        "uv run pytest",  # README: Start here
        "uv run pytest -m slow",
        "uv run ruff check . && uv run ruff format --check .",
        "bash tests/image/setup_podman.sh",
    ]
    readme = _readme_commands()
    for command in wanted:
        assert command in readme, f"README.md no longer has `{command}`: update this test"
        assert command in _ci_lines(), f".ci/run does not run the README's `{command}`"


def test_ci_installs_uv_with_the_readme_line_that_needs_no_pip() -> None:
    (pipx,) = [c for c in _readme_commands() if c.startswith("pipx install uv")]
    lines = _ci_lines()
    assert pipx in lines, ".ci/run must install uv with the README's pipx line"
    assert not any(re.search(r"pip3? install\b(?!.*pipx)", line) for line in lines), (
        "pip install outside a venv fails on Debian 12 / Ubuntu 24.04 (PEP 668)"
    )
    assert any("apt_install chromium" in line for line in lines)  # the screenshot test


def test_ci_script_passes_shellcheck() -> None:
    proc = subprocess.run(["shellcheck", str(CI_RUN)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    assert CI_RUN.stat().st_mode & 0o111, ".ci/run must be executable"
