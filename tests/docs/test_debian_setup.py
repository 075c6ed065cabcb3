"""The README's set-up, as written, on a bare Debian 12 with its system Python (slow, podman).

Why: Debian 12 and Ubuntu 24.04 refuse `python3 -m pip install uv` outside a venv
(PEP 668), which is how the README's first command once failed for a newcomer. This
runs the README's own lines in a container made from Debian's packages (the image
test's debootstrap base: python3, python3-venv, ca-certificates; no pyenv, no uv),
on a copy of this clone without its .venv.

Environment, not commands, is adapted: the host network and CA bundle (podman as the
image test uses it), and `SSL_CERT_FILE` so uv trusts the same bundle.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .readme import ROOT, bash_blocks

if TYPE_CHECKING:
    from image.engine import Engine

pytestmark = pytest.mark.slow

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _readme_line(pattern: str) -> str:
    found = [c for b in bash_blocks() for c in b.commands if re.search(pattern, c)]
    assert len(found) == 1, f"README.md should have exactly one command matching {pattern!r}"
    return found[0]


def _copy_clone(destination: Path) -> None:
    """The files a clone has (tracked + new, not ignored): no .venv, no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str]:
    """(engine, base image tag) or a skip naming what is missing (a failure under CI)."""
    from image.engine import DebianBase, EngineUnavailableError, ensure_debian_base, find_engine

    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    try:
        engine = find_engine()
        base = DebianBase()
        ensure_debian_base(engine, base, tmp_path_factory.mktemp("debootstrap") / "log")
    except EngineUnavailableError as exc:
        if in_ci:
            pytest.fail(f"Debian set-up test cannot run: {exc}", pytrace=False)
        pytest.skip(f"needs podman or docker: {exc}")
    return engine, base.tag


@pytest.mark.timeout(1800)  # downloads uv and the locked dependencies into a bare container
def test_readme_setup_on_debian_system_python(debian: tuple[Engine, str], tmp_path: Path) -> None:
    engine, image = debian
    install = _readme_line(r"^pipx install uv\b")
    local_job = _readme_line(r"scripts/train_and_transform\.py --local$")
    tests = "uv run pytest"
    src = tmp_path / "clone"
    _copy_clone(src)
    script = "\n".join(
        [
            "set -euo pipefail",
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip pipx",
            "echo '== PEP 668: pip outside a venv'",
            "if python3 -m pip install uv 2>/tmp/pip.err; then echo 'pip was allowed'; exit 10; fi",
            "grep -q externally-managed-environment /tmp/pip.err && head -n 3 /tmp/pip.err",
            "echo '== README: install uv'",
            install,
            "uv --version",
            "cd /clone",
            "echo '== README: the local job'",
            local_job,
            "test -f artifacts/local/*/report.html",
            "echo '== README: the tests (collected: the suite itself runs in CI)'",
            f"{tests} --collect-only -q tests/docs",
            "echo SETUP-OK",
        ]
    )
    from image.engine import owner_labels

    name = f"sbt-docs-debian-setup-{uuid.uuid4().hex[:8]}"
    # Named and labelled like the image test's containers: a run killed midway leaves a
    # container that the next image-test run removes (engine.remove_stale_containers).
    argv = ["run", "--rm", "--name", name, *owner_labels(), "--network=host", *engine.run_flags]
    argv += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-e", f"SSL_CERT_FILE={CA_BUNDLE}"]
    argv += ["-v", f"{src}:/clone", image, "bash", "-c", script]

    log = tmp_path / "container.log"
    try:
        with log.open("w") as out:  # streamed, so a slow step can be watched with tail -f
            proc = subprocess.run(
                [*engine.argv, *argv], stdout=out, stderr=subprocess.STDOUT, timeout=1700
            )
    finally:
        engine.remove_container(name)  # gone already (--rm) unless the run timed out

    output = log.read_text(errors="replace")
    assert proc.returncode == 0 and "SETUP-OK" in output, (
        f"`{engine.name} {shlex.join(argv[:4])} ...` exited {proc.returncode} "
        f"(log {log}):\n{output[-4000:]}"
    )
    assert "Batch transform (local): Completed" in output
    assert re.search(r"\d+ tests? collected", output)
