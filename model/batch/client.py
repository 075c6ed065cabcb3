"""POST /invocations over one keep-alive connection, retried like Batch Transform retries.

SageMaker retries a failed invocation up to ``InvocationsMaxRetries`` times (0-3)
and waits ``InvocationsTimeoutInSeconds`` for an answer (ModelClientConfig, AWS API
reference). Here "failed" means a 5xx answer, a broken connection or a timeout; a
4xx answer is the server saying the *input* is wrong, so sending it again cannot
help and it is not retried.

Each worker thread owns one client, so the connection is reused request after
request (no per-request TCP set-up) and payloads go out straight from the bytes
object (``http.client`` sends a bytes body without copying it).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable
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
# First retry after 0.2 s, then 0.4 s, 0.8 s (AWS does not document its own pauses).
RETRY_BACKOFF_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer from the model server."""

    status: int
    body: bytes
    content_type: str | None


class InvocationError(Exception):
    """The request failed for good (a 4xx, or still failing after every retry)."""

    def __init__(self, reason: str, *, status: int | None, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.attempts = attempts

    @property
    def is_client_error(self) -> bool:
        """True for a 4xx: the server rejected the input itself."""
        return self.status is not None and 400 <= self.status < 500

    def describe(self, what: str = "the request") -> str:
        """Human wording, e.g. ``the model server rejected the record (HTTP 400: ...)``."""
        if self.is_client_error:
            return f"the model server rejected {what} ({self.reason})"
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"the model server failed after {tries} ({self.reason})"


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
        self.requests_sent = 0

    def invoke(self, payload: bytes) -> Response:
        """Send one payload; return the 2xx answer or raise InvocationError."""
        attempts = 0
        while True:
            attempts += 1
            try:
                status, body, content_type = self._send(payload)
            except (OSError, http.client.HTTPException) as error:
                self._reset()
                status, reason = None, _describe_transport_error(error, self._timeout)
            else:
                if 200 <= status < 300:
                    return Response(status, body, content_type)
                reason = f"HTTP {status}: {_first_line(body)}"
            retryable = status is None or status >= 500
            if self._aborted or not retryable or attempts > self._max_retries:
                raise InvocationError(reason, status=status, attempts=attempts)
            self._sleep(self._backoff * 2 ** (attempts - 1))

    def _send(self, payload: bytes) -> tuple[int, bytes, str | None]:
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

    def _exchange(self, payload: bytes) -> tuple[int, bytes, str | None]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self.requests_sent += 1
        self._conn.request("POST", self._path, body=payload, headers=self._headers)
        response = self._conn.getresponse()
        body = response.read()
        self._used = True
        self._last_answer = time.monotonic()
        if response.will_close:
            self._reset()
        return response.status, body, response.getheader("Content-Type")

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
    if isinstance(error, ConnectionError):
        return f"connection lost ({error.__class__.__name__})"
    return f"{error.__class__.__name__}: {error}"
