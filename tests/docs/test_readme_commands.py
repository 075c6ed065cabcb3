"""Every ``bash`` block of README.md runs as written, or is listed here with the reason it cannot.

The commands come from README.md itself (tests/docs/readme.py), so a README command
that no longer matches the code fails here. Long commands run at ``--help`` level in
this fast set; tests/docs/test_readme_slow.py runs them for real.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from model.artifact import unpack_model_archive

from .conftest import RunFactory
from .readme import (
    README,
    ROOT,
    Block,
    bash_blocks,
    free_port,
    inline_commands,
    reader_env,
    run_block,
)

# Commands that cannot run offline on a test machine, and why (matched per command line).
NOT_OFFLINE = {
    r"^pulumi\b|\$\(pulumi\b": "needs the Pulumi CLI, a state backend and a deployed stack",
    r"^aws\b": "needs AWS credentials and a deployed stack",
    r"^docker\b": "needs a Docker daemon; the slow image test builds and runs the same "
    "Dockerfile with podman",
    r"^curl -LsSf https://astral\.sh/": "downloads uv from astral.sh and GitHub, which this "
    "machine cannot reach; the pipx line next to it is run by tests/docs/test_debian_setup.py",
    r"^pipx install uv\b": "installs uv into ~/.local/bin; tests/docs/test_debian_setup.py runs "
    "this line on a bare Debian 12 container",
    r"^bash tests/image/setup_podman\.sh": "installs podman from apt as root; .ci/run and the "
    "slow image test run it",
    r"scripts/train_and_transform\.py --stack\b": "needs a deployed stack and AWS credentials "
    "(tests/pipeline/test_cloud_* run the same code under moto)",
    r"~/SageMaker/": "runs on the notebook instance",
    r"^uv run python bench/": "a benchmark: minutes of measurement on an idle machine, not a check",
    r"^bash \.ci/run$": "CI itself: installs packages and runs this test among the others",
}

# README command -> how this fast test runs it (cwd "clone": the repository root).
FAST_FORMS = {
    "uv run --no-default-groups --group pipeline python scripts/train_and_transform.py --local": (
        " --help",
        "the whole job takes 15+ s; test_readme_slow.py runs it as written",
    ),
    "uv run python scripts/local_transform.py --model PATH/model.tar.gz --input DIR --output DIR": (
        " --help",
        "PATH and DIR are placeholders; test_readme_slow.py runs it on a real run directory",
    ),
    "uv run pytest": (
        " --collect-only -q tests/docs",
        "the suite cannot run itself from inside; collecting checks the command and the dev group",
    ),
    "uv run pytest -m slow": (
        " --collect-only -q tests/docs",
        "the slow set takes minutes; .ci/run runs it",
    ),
    "uv run ruff check . && uv run ruff format --check .": (
        "",
        "as written; exit 1 (a finding) is the checks' business, exit 2 would be a bad command",
    ),
}

# Blocks run whole, as a script, in a scratch directory holding a finished local run.
SERVE_BLOCK_START = "RUN=$(ls -d artifacts/local/*/ | tail -n 1)"


def _skip_reasons(block: Block) -> list[str]:
    return [
        reason
        for command in block.commands
        for pattern, reason in NOT_OFFLINE.items()
        if re.search(pattern, command)
    ]


def _all_blocks() -> list[Block]:
    """The bash blocks, plus each command written in a table cell as a one-line block."""
    return bash_blocks() + [Block(0, command + "\n") for command in inline_commands()]


def _runnable_blocks() -> list[Block]:
    return [block for block in _all_blocks() if not _skip_reasons(block)]


def test_every_bash_block_is_run_here_or_listed_with_a_reason() -> None:
    unclassified = []
    for block in _runnable_blocks():
        if block.commands[0] == SERVE_BLOCK_START:
            continue
        unclassified += [
            f"README.md:{block.line or 'table'}: {command}"
            for command in block.commands
            if command not in FAST_FORMS
        ]
    assert not unclassified, (
        "README commands this test neither runs nor lists in NOT_OFFLINE with a reason:\n"
        + "\n".join(unclassified)
    )


def test_every_rule_here_still_matches_a_readme_command() -> None:
    commands = [command for block in _all_blocks() for command in block.commands]
    stale = [form for form in FAST_FORMS if form not in commands]
    assert SERVE_BLOCK_START in commands, "the serve + curl example lost its first line"
    assert not stale, f"rules for commands the README no longer has: {stale}"


@pytest.mark.parametrize("command", sorted(FAST_FORMS))
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    suffix, _why = FAST_FORMS[command]
    proc = run_block(command + suffix, ROOT, reader_env(tmp_path), timeout=240)
    allowed = {0, 1} if "ruff" in command else {0}
    assert proc.returncode in allowed, (
        f"`{command + suffix}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    )
    if suffix == " --help":
        assert "usage:" in proc.stdout
    if "--collect-only" in suffix:
        assert "tests collected" in proc.stdout or "test collected" in proc.stdout


def test_serve_and_curl_example_runs_as_written(tmp_path: Path, finished_run: RunFactory) -> None:
    """The serve block, on a local run's model/ and input/, with only the port changed."""
    (block,) = [b for b in bash_blocks() if b.commands[0] == SERVE_BLOCK_START]
    scratch = tmp_path / "clone"
    run_dir, _ = finished_run(name="src")
    target = scratch / "artifacts" / "local" / "20260101-120000"
    shutil.copytree(run_dir, target)
    unpack_model_archive(target / "model.tar.gz", target / "model")
    port = free_port()
    env = reader_env(tmp_path) | {"SAGEMAKER_BIND_TO_PORT": str(port)}
    script = block.text.replace("localhost:8080", f"localhost:{port}")
    assert script != block.text, "the example no longer talks to localhost:8080"

    proc = run_block(script, scratch, env, timeout=180)

    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = proc.stdout.replace(" ", "")
    assert answers.startswith('{"MaxConcurrentTransforms":')  # /ping printed nothing
    # The CSV answer (three labels), then the JSON one with probabilities.
    assert re.search(r'}(\w+\n\w+\n\w+)\{"predictions":\[\[', answers), proc.stdout
    assert len((scratch / "rows.csv").read_text().splitlines()) == 3


def test_scripts_docstrings_show_the_uv_run_command() -> None:
    """`python scripts/X.py` alone ends in ModuleNotFoundError: the usage lines say uv run."""
    for script in sorted((ROOT / "scripts").glob("*.py")):
        doc = script.read_text(encoding="utf-8").split('"""')[1]
        usage = [line.strip() for line in doc.splitlines() if "scripts/" in line]
        assert usage, f"{script.name}: the docstring shows no command line"
        bare = [line for line in usage if not line.startswith("uv run")]
        assert not bare, f"{script.name}: write these with `uv run`: {bare}"


def test_readme_names_no_bare_python_script_command() -> None:
    text = README.read_text(encoding="utf-8")
    commands = [c for block in bash_blocks(text) for c in block.commands]
    commands += re.findall(r"`([^`]*\bpython3? scripts/[^`]*)`", text)  # inline code
    bare = [c for c in commands if re.search(r"\bpython3? scripts/\w", c) and "uv run" not in c]
    assert not bare, f"write these with `uv run`: {bare}"
