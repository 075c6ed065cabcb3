"""Start the real ``serve`` process on a loopback port, wait until it is ready, stop it.

The same console script runs in the image, here and in the tests, configured the
way SageMaker configures a container: ``MODEL_DIR``, ``SAGEMAKER_BIND_TO_PORT``,
``SAGEMAKER_BATCH`` and, when the job set them, the ``SAGEMAKER_*`` limits; plus
``SERVING_HOST=127.0.0.1`` so nothing listens beyond this machine.

Nothing may outlive the runner: ``serve`` starts in its own session (its workers
share that process group), and ``stop`` sends SIGTERM to the whole group, then
SIGKILL if it has not exited within the grace period. ``ServeProcess`` is a context
manager, so ``stop`` runs after success, an error or Ctrl-C alike; on Linux the
server also gets SIGTERM if the runner itself is killed (``PR_SET_PDEATHSIG``).
Ctrl-C in a terminal reaches only the runner (the server is in another session),
which then stops the server in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from model.errors import UserError

LOOPBACK = "127.0.0.1"
PING_TIMEOUT_SECONDS = 2.0  # SageMaker: each /ping times out after 2 s
DEFAULT_STARTUP_TIMEOUT = 180.0
DEFAULT_STOP_GRACE = 10.0
_PR_SET_PDEATHSIG = 1


class ServerError(UserError):
    """``serve`` could not be started, or stopped answering."""


class PortInUseError(ServerError):
    """The requested port is taken by another process."""


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel says is free on ``host`` (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serve_command() -> list[str]:
    """The ``serve`` console script of this environment (next to the interpreter first)."""
    beside = Path(sys.executable).with_name("serve")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("serve")
    if found:
        return [found]
    # Installed without scripts (e.g. only on sys.path): same entry point, same code.
    return [sys.executable, "-c", "import sys; from serving.cli import main; sys.exit(main())"]


def _death_signal_hook() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the server if the runner dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


class ServeProcess:
    """One ``serve`` process bound to 127.0.0.1, as a context manager."""

    def __init__(
        self,
        model_dir: Path,
        *,
        port: int | None = None,
        workers: int | None = None,
        environment: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        command: Sequence[str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        self.model_dir = model_dir
        self.requested_port = port
        self.workers = workers
        self.environment = dict(environment or {})
        self.log_path = log_path
        self.command = list(command) if command is not None else serve_command()
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.host = LOOPBACK
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._log_file: IO[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id)."""
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start ``serve`` and return once ``/ping`` answers 200 (or raise ServerError)."""
        if self.requested_port is not None:
            if not port_is_free(self.requested_port):
                raise PortInUseError(
                    f"port {self.requested_port} on {LOOPBACK} is already in use; choose "
                    "another port, or leave the port out to use a free one"
                )
            ports = [self.requested_port]
        else:
            ports = [free_port() for _ in range(3)]  # another process may win a race
        started = time.perf_counter()
        for attempt, port in enumerate(ports, start=1):
            try:
                self._launch(port)
                self._wait_until_ready(started)
            except _BindFailedError:
                self.stop()
                if self.requested_port is not None:
                    raise PortInUseError(
                        f"port {port} on {LOOPBACK} was taken before serve could bind it; "
                        "choose another port"
                    ) from None
                if attempt == len(ports):
                    raise ServerError(
                        f"serve could not bind a free port on {LOOPBACK} after {attempt} tries"
                    ) from None
                continue
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.perf_counter() - started
            return

    def _launch(self, port: int) -> None:
        self.port = port
        env = dict(os.environ)
        env.update(self.environment)
        env.update(
            {
                "MODEL_DIR": str(self.model_dir),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "SERVING_HOST": LOOPBACK,
            }
        )
        if self.workers is not None:
            env["SERVING_WORKERS"] = str(self.workers)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
            output: Any = self._log_file
        else:
            output = subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            preexec_fn=_death_signal_hook(),
        )

    def _wait_until_ready(self, started: float) -> None:
        assert self.process is not None
        deadline = started + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise _BindFailedError
                raise ServerError(
                    f"serve exited with code {code} before it was ready"
                    + (f": {tail}" if tail else "")
                    + (f" (full log: {self.log_path})" if self.log_path else "")
                )
            if self.ping():
                return
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"serve did not answer /ping within {self.startup_timeout:g} s"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            time.sleep(0.05)

    def ping(self) -> bool:
        """Whether ``GET /ping`` answers 200 within SageMaker's 2 s."""
        try:
            status, _ = self.get("/ping", timeout=PING_TIMEOUT_SECONDS)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def get(self, path: str, *, timeout: float = PING_TIMEOUT_SECONDS) -> tuple[int, bytes]:
        """GET ``path`` from the server: (status, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def execution_parameters(self) -> dict[str, Any] | None:
        """The container's ``GET /execution-parameters`` answer, or None if it has none."""
        try:
            status, body = self.get("/execution-parameters", timeout=10.0)
        except (OSError, http.client.HTTPException):
            return None
        if status != 200:
            return None
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def log_tail(self, lines: int = 3) -> str:
        """The last lines the server wrote (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 8192))
            text = log.read().decode("utf-8", errors="replace")
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after the grace period."""
        process = self.process
        if process is not None:
            group = process.pid
            if process.poll() is None:
                _signal_group(group, signal.SIGTERM)
                _signal_group(group, signal.SIGCONT)  # a stopped (hung) server must see it
                try:
                    process.wait(timeout=self.stop_grace)
                except subprocess.TimeoutExpired:
                    _signal_group(group, signal.SIGKILL)
                    process.wait()
            # Workers left behind by a server that died on its own go too.
            _signal_group(group, signal.SIGKILL)
            self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """The server's exit status once it has exited on its own, else None."""
        return self.process.poll() if self.process is not None else None


class _BindFailedError(Exception):
    """serve exited because its port was taken (retried on another free port)."""


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
