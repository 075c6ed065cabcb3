"""Files written whole or not at all, and a full disk explained in one line.

Every file the main job leaves in its run directory (transform input, labels,
manifest, model archive, summary) is written to a temporary file in the same
directory and renamed into place, so a crash or a full disk never leaves a
truncated file that looks complete. ``ENOSPC`` becomes a ``DiskFullError`` that
names the directory, what was needed and what is free. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from model.errors import UserError

WORKDIR_HINT = "free some space or choose another --workdir"


class DiskFullError(UserError):
    """Not enough space in a directory for what must be written there."""


def human_bytes(count: int) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, as ``df -h`` prints them)."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def free_bytes(directory: Path) -> int | None:
    """Bytes available to this user under ``directory`` (None when it cannot be read)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def disk_full(directory: Path, needed: int, hint: str = "") -> DiskFullError:
    """The one-line error for a full disk: where, how much was needed, how much is free."""
    free = free_bytes(directory)
    detail = f"needed {human_bytes(needed)}"
    if free is not None:
        detail += f", {human_bytes(free)} free"
    message = f"no space left on device in {directory} ({detail})"
    return DiskFullError(f"{message}; {hint}" if hint else message)


def check_free_space(directory: Path, needed: int, hint: str = "") -> None:
    """Refuse up front (nothing written yet) when ``needed`` bytes clearly do not fit."""
    free = free_bytes(directory)
    if free is not None and free < needed:
        raise disk_full(directory, needed, hint)


def is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC (and EDQUOT, a full quota, which a user fixes the same way)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, hint: str = "") -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file is removed whatever happens; a full disk raises
    ``DiskFullError`` (``hint`` says what the user can do about it).
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(temp).chmod(mode)
        Path(temp).replace(path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            Path(temp).unlink()
        if is_disk_full(error):
            raise disk_full(path.parent, len(data), hint) from None
        raise
    return path


def remove_files(paths: Iterable[Path]) -> None:
    """Remove what a failed step wrote (missing files are fine)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
