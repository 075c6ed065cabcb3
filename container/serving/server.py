"""Pre-forking supervisor: it accepts connections and hands each to the least-loaded worker.

Why not `uvicorn --workers`: uvicorn spawns fresh interpreters, and each would
import scikit-learn and load the model again (seconds each, all competing for
the same cores at start-up). Here the parent has already imported everything,
loaded the model and warmed every code path; `fork()` gives each worker that
state for free (copy-on-write), so a worker is ready the moment it starts.

Balance: workers share no listening socket. The supervisor accepts each
connection and passes it (`SCM_RIGHTS` over a Unix socket pair) to the
worker with the fewest open connections, preferring workers whose event loop
ran recently (one busy predicting, or hung, is passed over while others are
free). Kept-alive connections then stay where they are, spread evenly,
whatever the number of clients: with 8 keep-alive clients on 2 workers each
worker holds 4. Above `SERVING_MAX_CONNECTIONS` per worker a connection
gets 503.

Faults: a worker that dies (a request that crashes it, an OOM kill) is
replaced from the warm parent after a back-off that doubles with each death
of a worker that never answered a request (0.1 s up to 5 s); one that has
answered requests comes back at once. `serve` gives up only when workers keep
dying before they ever become ready (the model cannot serve at all). A worker
whose event loop has not run for `SERVING_WORKER_TIMEOUT` seconds (hung, or
stopped) is killed and replaced, like gunicorn's `--timeout`; its clients see
their connections closed.

Signals: SIGTERM or SIGINT makes the supervisor take in every connection
still waiting in the backlog, hand it over, close the port and pass SIGTERM to
the workers, which answer every request already received (see
`serving.worker`). Workers still running after the grace period are killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import uvicorn

from serving.settings import Settings
from serving.worker import Board, WorkerServer, install_early_stop

log = logging.getLogger("serving")

_PR_SET_PDEATHSIG = 1
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
# A worker that answered requests, or lived this long, resets its slot's back-off.
_HEALTHY_SECONDS = 30.0
# Consecutive workers dying before they ever became ready: the model cannot serve.
_MAX_STARTUP_DEATHS = 5
# A worker whose loop has not run for this long is passed over for new connections.
_STALE_SECONDS = 1.0
# When every worker looks full, a connection waits this long for one to report
# a close before it gets 503: a client that just closed one and opens another
# (or a health check just before a burst) is still counted until the worker's
# loop has seen the close. Only the first of a run of refusals waits.
_FULL_GRACE_SECONDS = 0.2
# Extra time after the drain for workers to exit before they are killed.
_KILL_MARGIN_SECONDS = 3.0
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 38\r\nconnection: close\r\n\r\n"
    b"too many open connections; retry later\n"
)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Bind the listening socket (SO_REUSEADDR, IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        from serving.errors import StartupError

        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            f"(set SAGEMAKER_BIND_TO_PORT / SERVING_HOST)"
        ) from None
    return sock


@dataclass
class _Slot:
    """One worker position: the process in it now, and its history."""

    index: int
    pid: int = 0
    channel: socket.socket | None = None
    started: float = 0.0
    handed: int = 0  # connections passed to the current worker
    deaths: int = 0  # consecutive deaths of workers that answered nothing
    respawn_at: float | None = None
    killed: bool = False


class Supervisor:
    """Fork `settings.workers` children serving `config`; feed, watch and replace them."""

    def __init__(self, sock: socket.socket, config: uvicorn.Config, settings: Settings) -> None:
        self.sock = sock
        self.config = config
        self.settings = settings
        self.slots = [_Slot(i) for i in range(settings.workers)]
        self.board = Board(settings.workers)
        self.stopping = False
        self.stop_deadline = 0.0
        self.startup_deaths = 0
        self.exit_code = 0
        self._signal: int | None = None
        self._turn = 0
        self._listening = False
        self._full_since: float | None = None
        self.waiting: deque[socket.socket] = deque()

    # ------------------------------------------------------------- main loop

    def run(self) -> int:
        """Serve until a signal stops all workers; the exit code for `serve`."""
        self.sock.setblocking(False)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(wake_read, selectors.EVENT_READ)
        self._wake = (wake_read, wake_write)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        try:
            for slot in self.slots:
                self._spawn(slot)
            while not (self.stopping and not self._alive()):
                self._step(wake_read)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            wake_read.close()
            wake_write.close()
            for slot in self.slots:
                self._close_channel(slot)
        return self.exit_code

    def _step(self, wake_read: socket.socket) -> None:
        self._set_listening(
            not self.stopping and not self.waiting and any(s.channel for s in self.slots)
        )
        for key, _ in self.selector.select(self._timeout()):
            if key.fileobj is self.sock:
                self._accept(limit=64)
            else:
                with contextlib.suppress(OSError):
                    wake_read.recv(4096)
        if self._signal is not None and not self.stopping:
            self._begin_stop(self._signal)
        self._reap()
        now = time.monotonic()
        if self.stopping:
            if now > self.stop_deadline:
                for slot in self.slots:
                    if slot.pid and not slot.killed:
                        log.error(
                            "worker %d still busy after the grace period; killing it", slot.pid
                        )
                        self._kill(slot)
            return
        self._watchdog(now)
        for slot in self.slots:
            if not slot.pid and slot.respawn_at is not None and now >= slot.respawn_at:
                self._spawn(slot)
        self._retry_waiting()

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [s.respawn_at - now for s in self.slots if not s.pid and s.respawn_at is not None]
        if self.waiting:
            due.append(0.01)
        return max(0.0, min([0.5, *due]))

    def _alive(self) -> bool:
        return any(slot.pid for slot in self.slots)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self._signal = signum

    # ------------------------------------------------------------ connections

    def _set_listening(self, on: bool) -> None:
        """Accept only while some worker can take connections; else they wait in the backlog."""
        if on == self._listening:
            return
        if on:
            self.selector.register(self.sock, selectors.EVENT_READ)
        else:
            self.selector.unregister(self.sock)
        self._listening = on

    def _accept(self, limit: int | None = None) -> None:
        accepted = 0
        while limit is None or accepted < limit:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                # e.g. out of file descriptors: the connection stays in the
                # backlog; pause instead of spinning on a listener that stays ready
                log.warning("accept failed: %s", exc)
                time.sleep(0.05)
                return
            accepted += 1
            self._hand_off(conn)

    def _hand_off(self, conn: socket.socket) -> None:
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._send(conn):
            self.waiting.append(conn)

    def _send(self, conn: socket.socket) -> bool:
        """Pass `conn` to the best worker; False if none could take it now (it waits)."""
        full = unreachable = 0
        for slot, load in self._candidates():
            if load >= self.settings.max_connections:
                full += 1
                continue
            assert slot.channel is not None
            try:
                socket.send_fds(slot.channel, [b"c"], [conn.fileno()])
            except OSError:  # its channel is full (worker stuck) or the worker just died
                unreachable += 1
                continue
            slot.handed += 1
            self._turn += 1
            self._full_since = None
            conn.close()
            return True
        if not full or unreachable:
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since < _FULL_GRACE_SECONDS and not self.stopping:
            return False  # waits: a close may be on its way
        log.warning("every worker has SERVING_MAX_CONNECTIONS open connections: 503")
        with contextlib.suppress(OSError):
            conn.send(_REFUSED)
        conn.close()
        return True

    def _retry_waiting(self) -> None:
        """Hand over connections that found no live worker (one had just died)."""
        while self.waiting and self._send(self.waiting[0]):
            self.waiting.popleft()

    def _candidates(self) -> list[tuple[_Slot, int]]:
        """Live workers, best first: loop ran recently, fewest connections, then in turn."""
        now = time.monotonic()
        board = self.board
        ranked = []
        count = len(self.slots)
        for slot in self.slots:
            if not slot.channel or slot.killed:
                continue
            i = slot.index
            # Open plus in transit, each counted once: adoption is not a step in between.
            load = max(0, slot.handed - int(board.get(i, Board.CLOSED)))
            stale = now - board.get(i, Board.HEARTBEAT) > _STALE_SECONDS
            ranked.append(((stale, load, (i - self._turn) % count), slot, load))
        ranked.sort(key=lambda entry: entry[0])
        return [(slot, load) for _, slot, load in ranked]

    # ---------------------------------------------------------------- workers

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for slot in self.slots:
                if slot.pid == pid:
                    self._ended(slot, os.waitstatus_to_exitcode(status))

    def _ended(self, slot: _Slot, code: int) -> None:
        pid = slot.pid
        i = slot.index
        ready = self.board.get(i, Board.READY) > 0
        answered = self.board.get(i, Board.REQUESTS) > 0
        slot.pid = 0
        self._close_channel(slot)
        if self.stopping:
            return
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.startup_deaths = 0 if ready else self.startup_deaths + 1
        if self.startup_deaths >= _MAX_STARTUP_DEATHS:
            log.error(
                "worker %d ended (%s) before becoming ready, %d in a row: the server cannot "
                "start workers; stopping",
                pid,
                reason,
                self.startup_deaths,
            )
            self.exit_code = 1
            self._begin_stop(None)
            return
        lived = time.monotonic() - slot.started
        slot.deaths = 0 if answered or lived > _HEALTHY_SECONDS else slot.deaths + 1
        delay = (
            0.0 if not slot.deaths else min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (slot.deaths - 1))
        )
        log.error("worker %d ended (%s); starting a new one in %.1f s", pid, reason, delay)
        slot.respawn_at = time.monotonic() + delay

    def _watchdog(self, now: float) -> None:
        limit = self.settings.worker_timeout_seconds
        for slot in self.slots:
            if not slot.pid or slot.killed:
                continue
            last = self.board.get(slot.index, Board.HEARTBEAT) or slot.started
            if now - last > limit:
                log.error(
                    "worker %d made no progress for %.0f s (SERVING_WORKER_TIMEOUT=%g); killing it",
                    slot.pid,
                    now - last,
                    limit,
                )
                self._kill(slot)

    def _kill(self, slot: _Slot) -> None:
        slot.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.pid, signal.SIGKILL)

    def _begin_stop(self, signum: int | None) -> None:
        if signum is not None:
            log.info(
                "received %s: finishing requests already received, then exiting",
                signal.Signals(signum).name,
            )
        self.stopping = True
        self.stop_deadline = (
            time.monotonic() + self.settings.graceful_shutdown_seconds + _KILL_MARGIN_SECONDS
        )
        if signum is not None:
            self._accept()  # what already waits in the backlog was sent before the signal
            self._retry_waiting()
        while self.waiting:  # no worker left to answer them
            self.waiting.popleft().close()
        self._set_listening(False)
        self.sock.close()
        for slot in self.slots:
            slot.respawn_at = None
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)

    def _close_channel(self, slot: _Slot) -> None:
        if slot.channel is not None:
            slot.channel.close()
            slot.channel = None

    def _spawn(self, slot: _Slot) -> None:
        if self.stopping:
            return
        parent = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.board.reset(slot.index)
        # Signals stay blocked across fork() until each side has the right
        # handlers: the parent must know the new pid before it forwards SIGTERM,
        # and the child must never run the parent's handler.
        stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            ours.close()
            theirs.close()
            log.error("cannot start a worker: %s; retrying", exc)
            slot.respawn_at = time.monotonic() + _BACKOFF_MAX
            return
        if pid:
            theirs.close()
            slot.pid, slot.channel, slot.started = pid, ours, time.monotonic()
            slot.handed, slot.killed, slot.respawn_at = 0, False, None
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            return
        # Child: never return into the parent's code; always leave through _exit.
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            install_early_stop()
            self._close_parent_files(keep=theirs)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            _die_with_parent(parent)
            WorkerServer(
                self.config,
                slot=slot.index,
                channel=theirs,
                board=self.board,
                drain_seconds=self.settings.graceful_shutdown_seconds,
            ).run()
            code = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _close_parent_files(self, keep: socket.socket) -> None:
        """In a new worker: drop the supervisor's sockets (the port must close with it)."""
        with contextlib.suppress(Exception):
            self.selector.close()
        for sock in (self.sock, *self._wake, *(s.channel for s in self.slots if s.channel)):
            if sock is not keep:
                with contextlib.suppress(OSError):
                    sock.close()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies without stopping it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        WorkerServer.stop_requested = True
