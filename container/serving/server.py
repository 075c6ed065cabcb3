"""Pre-forking supervisor: one listening socket, N uvicorn workers, graceful stop.

Why not `uvicorn --workers`: uvicorn spawns fresh interpreters, and each would
import scikit-learn and load the model again (seconds each, all competing for
the same cores at start-up). Here the parent has already imported everything,
loaded the model and warmed every code path; `fork()` gives each worker that
state for free (copy-on-write), so a worker is ready the moment it starts and
cold start stays close to "import + load" once.

All workers accept on the one inherited socket. A worker predicting is busy on
its event loop and does not accept, so new connections go to idle workers; a
worker that still ends up holding several connections closes the extra ones
after their answers (`open_connections`, see `serving.app.create_app`), so
kept-alive connections spread out over the workers.

Signals: SIGTERM or SIGINT to the parent is passed on as SIGTERM to every
worker; uvicorn then stops accepting, finishes in-flight requests and exits,
and the parent exits 0 once all workers are gone. A worker that dies otherwise
is replaced (from the same warm parent), unless workers keep dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import uvicorn

log = logging.getLogger("serving")

_CRASH_WINDOW_SECONDS = 60.0
_MAX_CRASHES_IN_WINDOW = 10
_PR_SET_PDEATHSIG = 1


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Bind the shared listening socket (SO_REUSEADDR, IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        from serving.errors import StartupError

        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            f"(set SAGEMAKER_BIND_TO_PORT / SERVING_HOST)"
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Any, graceful_shutdown_seconds: float, max_body_bytes: int
) -> uvicorn.Config:
    """uvicorn settings shared by all workers; loaded here, before forking.

    With httptools, the HTTP protocol is `serving.protocol`'s, which reads
    request bodies of up to `max_body_bytes` straight into the `bytes` the app gets.
    """
    config = uvicorn.Config(
        app,
        loop=_available("uvloop", "uvloop", "asyncio"),
        http=_http_protocol(max_body_bytes),
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(graceful_shutdown_seconds),
        # Longer than typical client pools keep idle connections, so the server
        # is not the one closing a connection the client is about to reuse.
        timeout_keep_alive=60,
    )
    config.load()  # imports the protocol and loop modules once, in the parent
    return config


def _http_protocol(max_body_bytes: int) -> str | type[asyncio.BaseProtocol]:
    """uvicorn's `http` setting: the direct-body httptools protocol, or h11 without httptools."""
    if _available("httptools", "yes", "no") == "no":
        return "h11"
    from serving.protocol import protocol_class

    return protocol_class(max_body_bytes)


def _available(module: str, yes: str, no: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return no
    return yes


_server_state: Any = None


def open_connections() -> int:
    """Connections this worker process has open now (0 outside a worker)."""
    return len(_server_state.connections) if _server_state is not None else 0


class _WorkerServer(uvicorn.Server):
    """uvicorn.Server that honours a SIGTERM received before it set its own handlers,
    and publishes its connection count for `open_connections`."""

    stop_requested = False

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        global _server_state
        _server_state = self.server_state

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if _WorkerServer.stop_requested:
            self.should_exit = True
        else:
            log.info("worker %d ready", os.getpid())


def _early_stop(signum: int, frame: Any) -> None:
    _WorkerServer.stop_requested = True


class Supervisor:
    """Fork `workers` children serving `config` on `sock`; restart the ones that die."""

    def __init__(self, sock: socket.socket, config: uvicorn.Config, workers: int) -> None:
        self.sock = sock
        self.config = config
        self.workers = workers
        self.children: set[int] = set()
        self.stopping = False
        self.crashes: deque[float] = deque()

    def run(self) -> int:
        """Serve until a signal stops all workers; the exit code for `serve`."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        exit_code = 0
        try:
            for _ in range(self.workers):
                self._spawn()
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:  # pragma: no cover - children reaped elsewhere
                    break
                if pid not in self.children:
                    continue
                self.children.discard(pid)
                if self.stopping:
                    continue
                code = os.waitstatus_to_exitcode(status)
                reason = f"signal {-code}" if code < 0 else f"exit code {code}"
                if self._too_many_crashes():
                    log.error("worker %d ended (%s); workers keep dying, stopping", pid, reason)
                    exit_code = 1
                    self._stop_all()
                    continue
                log.error("worker %d ended (%s); starting a new one", pid, reason)
                self._spawn()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return exit_code

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            log.info(
                "received %s: finishing in-flight requests, then exiting",
                signal.Signals(signum).name,
            )
        self._stop_all()

    def _stop_all(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _too_many_crashes(self) -> bool:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > _CRASH_WINDOW_SECONDS:
            self.crashes.popleft()
        return len(self.crashes) > _MAX_CRASHES_IN_WINDOW

    def _spawn(self) -> None:
        if self.stopping:  # a signal came while the first workers were starting
            return
        parent = os.getpid()
        # Signals stay blocked across fork() until each side has the right
        # handlers: the parent must know the new pid before it forwards SIGTERM,
        # and the child must never run the parent's handler.
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            raise
        if pid:
            self.children.add(pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            return
        # Child: never return into the parent's code; always leave through _exit.
        code = 1
        try:
            signal.signal(signal.SIGTERM, _early_stop)
            signal.signal(signal.SIGINT, _early_stop)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            _die_with_parent(parent)
            _WorkerServer(self.config).run(sockets=[self.sock])
            code = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies without stopping it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        _WorkerServer.stop_requested = True
