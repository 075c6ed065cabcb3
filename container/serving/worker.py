"""One forked serving worker: uvicorn fed with connections the supervisor hands over.

The supervisor (`serving.server`) accepts every connection and passes it to
the worker with the fewest open connections over a Unix socket pair
(`SCM_RIGHTS`); the worker adopts it into its event loop. Through `Board`,
shared memory written before the fork, each worker publishes what the
supervisor decides with: a heartbeat (its event loop ran), whether it is
ready, how many of the connections handed to it have closed (handed minus
closed is its load, counting connections still in transit once), and the
requests it answered.

SIGTERM starts a drain: take in every connection already handed over, then
close connections only when that loses nothing (no request partly received,
no request bytes waiting in the kernel), answer the rest with
`Connection: close`, and exit when none are left or the grace period ends.

`uvicorn_config` builds the uvicorn settings every worker runs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import mmap
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn

from serving import csv_simd
from serving.limits import GuardedHttpToolsProtocol, sweep
from serving.runtime import release_free_memory
from serving.settings import Settings

log = logging.getLogger("serving")

# Free heap kept after a burst of large requests is given back once the
# worker has been idle this long (see `serving.runtime.release_free_memory`).
_TRIM_IDLE_SECONDS = 1.0
_TRIM_MIN_FREE_BYTES = 16 * 1024 * 1024


class Board:
    """Per-worker figures in an anonymous shared mapping (made before forking).

    Every field is written by one process only (the worker, or the supervisor
    while the slot has no worker), so no locks are needed.
    """

    HEARTBEAT, READY, CLOSED, REQUESTS = range(4)
    _FIELDS = 4

    def __init__(self, slots: int) -> None:
        self._memory = mmap.mmap(-1, 8 * self._FIELDS * slots)
        self._values = (ctypes.c_double * (self._FIELDS * slots)).from_buffer(self._memory)

    def get(self, slot: int, field: int) -> float:
        return float(self._values[slot * self._FIELDS + field])

    def set(self, slot: int, field: int, value: float) -> None:
        self._values[slot * self._FIELDS + field] = value

    def reset(self, slot: int) -> None:
        for field in range(self._FIELDS):
            self.set(slot, field, 0.0)


class _CountedSet(set):  # type: ignore[type-arg]
    """uvicorn's set of open connections, reporting each one that leaves it."""

    def __init__(self, on_close: Any) -> None:
        super().__init__()
        self._on_close = on_close

    def discard(self, item: Any) -> None:
        if item in self:
            super().discard(item)
            self._on_close()


class WorkerServer(uvicorn.Server):
    """uvicorn.Server without a listening socket: connections arrive on `channel`."""

    stop_requested = False  # a SIGTERM came before uvicorn set its handlers

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        slot: int,
        channel: socket.socket,
        board: Board,
        drain_seconds: float,
    ) -> None:
        super().__init__(config)
        self.slot = slot
        self.channel: socket.socket | None = channel
        self.board = board
        self.drain_seconds = drain_seconds
        self.server_state.connections = _CountedSet(self._count_close)
        self.closed = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None
        self._last_tick = time.monotonic()
        self._last_request_change = self._last_tick
        self._requests_seen = 0
        self._trimmed = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            # As uvicorn.Server.startup builds its protocols.
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )

        self._create_protocol = create_protocol
        self.servers = []
        assert self.channel is not None
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive)
        self.started = True
        self.board.set(self.slot, Board.HEARTBEAT, time.monotonic())
        self.board.set(self.slot, Board.READY, 1.0)
        if WorkerServer.stop_requested:
            self._drain_requested = True
        else:
            log.info("worker %d ready", os.getpid())

    def _receive(self) -> None:
        """Adopt every connection waiting on the channel (non-blocking)."""
        loop = asyncio.get_running_loop()
        while self.channel is not None:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, 1, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the supervisor is gone: stop
                self._close_channel()
                self._drain_requested = True
                return
            for fd in fds:
                task = loop.create_task(self._adopt(socket.socket(fileno=fd)))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._create_protocol, sock)
        except OSError:
            sock.close()
            self._count_close()

    def _count_close(self) -> None:
        self.closed += 1
        self.board.set(self.slot, Board.CLOSED, self.closed)

    def _close_channel(self) -> None:
        if self.channel is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()
        self.channel = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested and sig == signal.SIGINT:
            self.force_exit = self.should_exit = True
        self._drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        now = time.monotonic()
        self.board.set(self.slot, Board.HEARTBEAT, now)
        requests = self.server_state.total_requests
        self.board.set(self.slot, Board.REQUESTS, requests)
        loop_now = asyncio.get_running_loop().time()
        connections = self.server_state.connections
        if now - self._last_tick > 1.0:  # the loop was blocked: nobody's fault
            sweep(connections, loop_now, restart=True)
        elif counter % 10 == 0:
            sweep(connections, loop_now)
        self._last_tick = now
        self._maybe_trim(now, requests)
        if self._drain_requested and self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        if self._drain_task is not None:
            await super().on_tick(counter)
            return self._drain_task.done() or self.should_exit
        return await super().on_tick(counter)

    def _maybe_trim(self, now: float, requests: int) -> None:
        """After a burst, once idle for a second, give free heap memory back to the kernel."""
        if requests != self._requests_seen:
            self._requests_seen = requests
            self._last_request_change = now
            self._trimmed = False
        elif (
            not self._trimmed
            and not self.server_state.tasks
            and now - self._last_request_change > _TRIM_IDLE_SECONDS
        ):
            self._trimmed = True
            csv_simd.release()
            freed = release_free_memory(_TRIM_MIN_FREE_BYTES)
            if freed:
                log.info("idle: returned %d MiB of free heap to the kernel", freed >> 20)

    async def _drain(self) -> None:
        """Answer every request already received, then let uvicorn finish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        if self.channel is not None:
            self._receive()
            self._close_channel()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=max(0.1, deadline - loop.time()))
        GuardedHttpToolsProtocol.draining = True
        connections = self.server_state.connections
        while connections and loop.time() < deadline:
            for connection in list(connections):
                if (
                    not isinstance(connection, GuardedHttpToolsProtocol)
                    or connection.may_close_for_drain()
                ):
                    connection.shutdown()
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------ config


def uvicorn_config(app: Any, settings: Settings, *, direct_body: bool = True) -> uvicorn.Config:
    """uvicorn settings shared by all workers; loaded here, before forking.

    With httptools, the HTTP protocol is `serving.limits`' guarded one, and by
    default `serving.protocol`'s, which also reads request bodies straight
    into the `bytes` the app gets.
    """
    config = uvicorn.Config(
        app,
        loop=_available("uvloop", "uvloop", "asyncio"),
        http=_http_protocol(settings, direct_body),
        lifespan="off",
        # The contract has no WebSocket; an upgrade would also move a connection
        # out of the set whose closes the supervisor counts.
        ws="none",
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        # The drain (serving.worker) takes the grace period; uvicorn's own
        # shutdown afterwards only cleans up.
        timeout_graceful_shutdown=1,
        # Longer than typical client pools keep idle connections, so the server
        # is not the one closing a connection the client is about to reuse.
        timeout_keep_alive=60,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    config.load()  # imports the protocol and loop modules once, in the parent
    return config


def _http_protocol(settings: Settings, direct_body: bool) -> str | type[asyncio.BaseProtocol]:
    """uvicorn's `http` setting: the guarded httptools protocol, or h11 without httptools."""
    if _available("httptools", "yes", "no") == "no":
        return "h11"
    from serving.limits import GuardedHttpToolsProtocol, guarded_class
    from serving.protocol import DirectBodyHttpToolsProtocol, protocol_class

    limits = {
        "max_head_bytes": settings.max_header_bytes,
        "head_timeout": settings.header_timeout_seconds,
        "body_timeout": settings.body_idle_timeout_seconds,
    }
    if not direct_body:
        return guarded_class(GuardedHttpToolsProtocol, **limits)
    return protocol_class(
        settings.max_body_bytes, guarded_class(DirectBodyHttpToolsProtocol, **limits)
    )


def _available(module: str, yes: str, no: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return no
    return yes


def _early_stop(signum: int, frame: Any) -> None:
    WorkerServer.stop_requested = True


def install_early_stop() -> None:
    """Until uvicorn sets its handlers, remember a SIGTERM/SIGINT instead of dying."""
    signal.signal(signal.SIGTERM, _early_stop)
    signal.signal(signal.SIGINT, _early_stop)
