"""Read README.md's ``bash`` blocks and run them the way a reader would (tests only).

Why: the README is the newcomer's path, and its commands drifted from the code
once already. The tests take the commands from README.md itself, so the file and
the code cannot disagree without a test failing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Block:
    """One fenced ``bash`` block: its text and the README line it starts on."""

    line: int
    text: str

    @property
    def commands(self) -> list[str]:
        """Logical command lines: continuations joined, comments and blank lines dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        lines = (strip_comment(line).strip() for line in joined.splitlines())
        return [line for line in lines if line]


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes after a space)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def bash_blocks(text: str | None = None) -> list[Block]:
    """Every ```bash fenced block of the README, in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL):
        blocks.append(Block(text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def inline_commands(text: str | None = None) -> list[str]:
    """Commands written inline in the README's tables (`` `uv run ...` `` cells)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    return re.findall(r"^\| `((?:uv|bash) [^`]+)` \|", text, flags=re.MULTILINE)


def uv_binary() -> str:
    """The uv the tests were started with (``uv run`` sets $UV), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise RuntimeError("no uv: run the tests with `uv run pytest`, or put uv on PATH")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reader_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a reader's shell: uv on PATH, this project found from anywhere."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    uv = bin_dir / "uv"
    if not uv.exists():
        uv.symlink_to(uv_binary())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PROJECT"] = str(ROOT)  # the block runs in a scratch directory, not in the clone
    env["UV_NO_SYNC"] = "1"  # the tests' .venv is complete; do not touch it mid-run
    return env


def run_block(
    script: str, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with bash -e in its own process group; whatever it left running is ended."""
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[test] killed after {timeout:.0f} s"
    finally:
        # Background jobs of the block (`serve &`) share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
