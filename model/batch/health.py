"""Watch the model server while a transform runs: gone or hung stops the run at once.

Without a watch, a server that died or hung cost the runner every remaining request's
retries and timeouts (files / MaxConcurrentTransforms x 4 x InvocationsTimeoutInSeconds:
hours at the default 600 s; issue 12 §3). The watch checks, about once a second:

- *gone*: the ``serve`` process exited (its code and last log lines are the message);
- *hung*: no sign of life for ``hang_seconds``. Signs of life are an answer to any
  request, a ``/ping`` answered 200 (each ping times out after 2 s, as SageMaker's do),
  and CPU time used by the server's process group: a model that takes minutes per
  batch keeps its workers busy (so pings wait) but burns CPU, and is not hung;
  a stopped or deadlocked server burns none.

Linux's ``/proc`` gives the CPU times (read only while the server is silent);
elsewhere only answers and pings count.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

DEFAULT_HANG_SECONDS = 30.0
PING_EVERY_SECONDS = 2.0


class Watched(Protocol):
    """What the watch needs from the server (``ServeProcess`` provides it)."""

    @property
    def pid(self) -> int | None: ...

    def exit_code(self) -> int | None: ...

    def ping(self) -> bool: ...

    def log_tail(self, lines: int = 3) -> str: ...


def group_cpu_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """utime + stime of process ``pid`` and its descendants (None without ``/proc``).

    Follows ``/proc/<pid>/task/<tid>/children`` (a handful of reads for serve and its
    workers) rather than scanning every process on the machine.
    """
    total = 0
    seen: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        base = proc / str(current)
        try:
            fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            if current == pid:
                return None  # no /proc, or the server is gone
            continue  # a worker exited meanwhile
        # After the command: state ppid pgrp session tty tpgid flags minflt cminflt
        # majflt cmajflt utime stime (proc(5), fields 3-15).
        total += int(fields[11]) + int(fields[12])
        try:
            tasks = list((base / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue
    return total


class ServerWatch:
    """Tells whether the server is gone or hung; ``answered`` is called on every answer."""

    def __init__(
        self,
        server: Watched,
        *,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        ping_every: float = PING_EVERY_SECONDS,
        clock: type[time.monotonic] | None = None,
    ) -> None:
        self.server = server
        self.hang_seconds = hang_seconds
        self.ping_every = ping_every
        self._now = clock or time.monotonic
        self._lock = threading.Lock()
        self._last_sign = self._now()
        self._last_ping = float("-inf")
        self._cpu: int | None = None

    def answered(self) -> None:
        """An HTTP answer arrived: the server is alive."""
        with self._lock:
            self._last_sign = self._now()

    def gone(self) -> str | None:
        """Why the run must stop if the server process has exited, else None (instant)."""
        code = self.server.exit_code()
        if code is None:
            return None
        return self._with_log(f"the model server exited (code {code}) during the transform")

    def problem(self) -> str | None:
        """None while the server is fine, else why the run must stop (one line)."""
        gone = self.gone()
        if gone is not None:
            return gone
        now = self._now()
        if now - self._last_ping >= self.ping_every:
            self._last_ping = now
            if self.server.ping():
                self.answered()
        with self._lock:
            silent = self._now() - self._last_sign
        pid = self.server.pid
        if silent >= self.ping_every and pid is not None:  # answers flowing: no need to look
            cpu = group_cpu_ticks(pid)
            if cpu is not None and self._cpu is not None and cpu != self._cpu:
                self.answered()
            self._cpu = cpu
        else:
            self._cpu = None  # compare only readings taken during one silence
        with self._lock:
            silent = self._now() - self._last_sign
        if silent < self.hang_seconds:
            return None
        return self._with_log(
            f"the model server is hung: no answer, no /ping and no CPU use for {silent:.0f} s "
            f"(limit {self.hang_seconds:g} s, --hang-seconds)"
        )

    def _with_log(self, message: str) -> str:
        tail = self.server.log_tail()
        return f"{message}; its last log lines: {tail}" if tail else message
