"""POST /invocations over one keep-alive connection, retried like Batch Transform retries.

SageMaker retries a failed invocation up to ``InvocationsMaxRetries`` times (0-3)
and waits ``InvocationsTimeoutInSeconds`` for an answer (ModelClientConfig, AWS API
reference). Here "failed" means a 5xx answer, a broken connection or a timeout; a
4xx answer is the server saying the *input* is wrong, so sending it again cannot
help and it is not retried.

Two failures are not worth four attempts either (issue 12 §1-2):

- a *model error*: ``serve`` marks a 500 raised by the model or the user's code with
  ``X-Model-Error: deterministic`` (the same input fails the same way): not retried,
  its one-line body says what failed (any other 5xx is retried as before);
- a *crash*: the connection broke while the server held the request (its worker died:
  a segfault, an out-of-memory kill). One retry tells a fluke from a record that kills
  the model; a second death ends the request instead of killing two more workers.
  ``serve`` workers hold several requests at once, so a clean request dies with a
  poisoned one on the same worker: with a shared ``IsolationGate`` the retry waits
  for the requests in flight, goes alone and holds new ones, so only a request that
  killed a worker *alone* fails.

Each worker thread owns one client, so the connection is reused request after
request (no per-request TCP set-up) and payloads go out straight from the bytes
object (``http.client`` sends a bytes body without copying it).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# A reused keep-alive connection the server has already closed fails like this
# before any answer arrives; that is not a failed attempt, just a stale socket.
# Servers close idle connections after seconds (uvicorn: 5 s), so only a connection
# idle for longer than _IDLE_BEFORE_STALE gets the free reconnect; a connection that
# breaks while busy (a crashed worker) counts as a failed attempt.
_IDLE_BEFORE_STALE = 0.5
_STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)
_CRASH_ERRORS = (*_STALE_CONNECTION_ERRORS, http.client.IncompleteRead)
# First retry after 0.2 s, then 0.4 s, 0.8 s (AWS does not document its own pauses).
RETRY_BACKOFF_SECONDS = 0.2
# Worker deaths on one request before it is given up (whatever InvocationsMaxRetries says).
MAX_CRASHES_PER_REQUEST = 2
MODEL_ERROR_HEADER = "X-Model-Error"  # serve: "deterministic" on a model's own 500


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer from the model server."""

    status: int
    body: bytes
    content_type: str | None


class InvocationError(Exception):
    """The request failed for good (a 4xx, or still failing after every retry)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None,
        attempts: int,
        model_error: bool = False,
        crashes: int = 0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.attempts = attempts
        self.model_error = model_error  # the model failed the same way (not retried)
        self.crashes = crashes  # times the server dropped the request mid-way

    @property
    def is_client_error(self) -> bool:
        """True for a 4xx: the server rejected the input itself."""
        return self.status is not None and 400 <= self.status < 500

    def describe(self, what: str = "the request") -> str:
        """Human wording, e.g. ``the model server rejected the record (HTTP 400: ...)``."""
        if self.is_client_error:
            return f"the model server rejected {what} ({self.reason})"
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        if self.model_error:
            return (
                f"the model failed on {what} ({self.reason}); not retried, the same input "
                "fails the same way (traceback in the server log)"
            )
        if self.crashes >= MAX_CRASHES_PER_REQUEST:
            return (
                f"the model server's worker died {self.crashes} times on {what} "
                f"({self.reason}); a record in it crashes the model (segfault or out of "
                "memory?): see the server log"
            )
        return f"the model server failed after {tries} ({self.reason})"


class IsolationGate:
    """A readers-writer gate shared by a run's clients: requests take it shared, a retry
    after a worker death takes it alone (waits for those in flight, holds new ones), so
    its second death cannot be another request's poison (the stdlib has no RW lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._waiting_alone = 0
        self._closed = False

    @contextlib.contextmanager
    def hold(self, *, alone: bool) -> Iterator[None]:
        """Hold the gate (alone or shared) for one request; a closed gate lets all pass."""
        with self._cond:
            if alone:
                self._waiting_alone += 1
                self._cond.wait_for(lambda: self._closed or not (self._alone or self._shared))
                self._waiting_alone -= 1
                held = self._alone = not self._closed
            else:
                self._cond.wait_for(
                    lambda: self._closed or not (self._alone or self._waiting_alone)
                )
                held = not self._closed
                self._shared += held
        try:
            yield
        finally:
            with self._cond:
                if held and alone:
                    self._alone = False
                elif held:
                    self._shared -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Release every waiter for good (the run is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _first_line(body: bytes, limit: int = 300) -> str:
    text = body[: limit * 4].decode("utf-8", errors="replace").strip()
    line = text.splitlines()[0] if text else ""
    return line[:limit] if line else "empty response body"


class InvocationClient:
    """One connection to ``http://host:port/invocations``; not shared between threads."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        content_type: str,
        accept: str | None,
        timeout: float,
        max_retries: int,
        backoff: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        path: str = "/invocations",
        on_answer: Callable[[], None] | None = None,
        gate: IsolationGate | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = RETRY_BACKOFF_SECONDS if backoff is None else backoff
        self._sleep = sleep
        self._path = path
        self._headers = {"Content-Type": content_type}
        if accept is not None:
            self._headers["Accept"] = accept
        self._conn: http.client.HTTPConnection | None = None
        self._used = False
        self._last_answer = 0.0
        self._aborted = False
        self._on_answer = on_answer  # told of every HTTP answer (the server is alive)
        self._gate = gate  # shared by the run's clients: retries after a crash go alone
        self.requests_sent = 0

    def invoke(self, payload: bytes) -> Response:
        """Send one payload; return the 2xx answer or raise InvocationError."""
        attempts = crashes = 0
        while True:
            attempts += 1
            model_error = False
            try:
                with self._hold(alone=crashes > 0):
                    status, body, content_type, marked = self._send(payload)
            except (OSError, http.client.HTTPException) as error:
                self._reset()
                status, reason = None, _describe_transport_error(error, self._timeout)
                crashes += isinstance(error, _CRASH_ERRORS)
            else:
                if 200 <= status < 300:
                    return Response(status, body, content_type)
                reason = f"HTTP {status}: {_first_line(body)}"
                model_error = status == 500 and marked
            retryable = (status is None or status >= 500) and not model_error
            if (
                self._aborted
                or not retryable
                or attempts > self._max_retries
                or crashes >= MAX_CRASHES_PER_REQUEST
            ):
                raise InvocationError(
                    reason,
                    status=status,
                    attempts=attempts,
                    model_error=model_error,
                    crashes=crashes,
                )
            self._sleep(self._backoff * 2 ** (attempts - 1))

    def _hold(self, *, alone: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._gate is None else self._gate.hold(alone=alone)

    def _send(self, payload: bytes) -> tuple[int, bytes, str | None, bool]:
        reused_after_idle = (
            self._conn is not None
            and self._used
            and time.monotonic() - self._last_answer >= _IDLE_BEFORE_STALE
        )
        try:
            return self._exchange(payload)
        except _STALE_CONNECTION_ERRORS:
            if not reused_after_idle or self._aborted:
                raise
            # The server closed an idle keep-alive connection: reconnect once, free.
            self._reset()
            return self._exchange(payload)

    def _exchange(self, payload: bytes) -> tuple[int, bytes, str | None, bool]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self.requests_sent += 1
        self._conn.request("POST", self._path, body=payload, headers=self._headers)
        response = self._conn.getresponse()
        body = response.read()
        self._used = True
        self._last_answer = time.monotonic()
        if self._on_answer is not None:
            self._on_answer()
        if response.will_close:
            self._reset()
        marked = "deterministic" in (response.getheader(MODEL_ERROR_HEADER) or "").lower()
        return response.status, body, response.getheader("Content-Type"), marked

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._used = False

    def close(self) -> None:
        """Close the connection (from the owning thread)."""
        self._reset()

    def abort(self) -> None:
        """Break an in-flight request from another thread (Ctrl-C); no more retries."""
        self._aborted = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _describe_transport_error(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within InvocationsTimeoutInSeconds={timeout:g}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: the model server is not running"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the model server closed the connection without answering"
    if isinstance(error, http.client.IncompleteRead):
        return "the model server broke off its answer"
    if isinstance(error, ConnectionError):
        return f"connection lost ({error.__class__.__name__})"
    return f"{error.__class__.__name__}: {error}"
