"""Limits a slow or hostile client meets: head size (431), head and body timeouts, draining.

uvicorn 0.54 offers none of these for httptools: no header size limit (1 MiB
and 16 MiB heads were accepted), no time limit on a request head (slowloris
connections stayed open indefinitely) and none on a body that stops arriving;
`timeout_keep_alive` only covers the wait between two requests. `limit_concurrency`
exists but answers 503 to every request once the count is reached, so
slow connections would lock out normal clients; the connection cap is kept by
`serving.server` instead, where connections are handed to workers.

`GuardedHttpToolsProtocol` adds them to uvicorn's httptools protocol through
the parser callbacks httptools defines (`on_message_begin`,
`on_headers_complete`, `on_body`, `on_message_complete`), the asyncio
protocol methods and uvicorn's `shutdown()`, each calling uvicorn's own
(`test_protocol_uvicorn_internals_unchanged` pins the uvicorn code they
rely on). The clocks are checked by `sweep`, which the worker calls once a
second: nothing is scheduled per request, so small requests pay nothing for
them. A head is measured twice: while it arrives (every read after the one it
began in counts whole), which bounds what the parser buffers, and exactly
once complete.
"""

from __future__ import annotations

import array
import fcntl
import termios
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size, head/body timeouts and drain support.

    Class attributes hold the limits (set by `guarded_class`); `draining` is
    switched on in a worker that is shutting down.
    """

    max_head_bytes: int = 64 * 1024
    head_timeout: float = 30.0
    body_timeout: float = 60.0
    draining: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Loop time the wait for a request head began: the connection opened
        # or a head's first byte came (the wait between requests is uvicorn's
        # keep-alive timeout). None once the head is complete.
        self.head_started: float | None = None
        self.in_head = False  # a head has begun and is not complete
        self.head_bytes = 0  # bytes of it so far (bounds what the parser buffers)
        self.body_open = False  # headers complete, body not yet complete
        self.last_progress = 0.0  # loop time bytes last arrived
        self.refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.head_started = self.last_progress = self.loop.time()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last_progress = self.loop.time()
        head_before = self.in_head
        super().data_received(data)
        if self.in_head and not self.refused:
            # The head is still incomplete after this read: if it had begun
            # before, all of the read belongs to it; if it began in this read,
            # at most all of it does.
            self.head_bytes += len(data) if head_before else 0
            if self.head_bytes > self.max_head_bytes:
                self.refuse(431, "request header fields are too large")

    # httptools callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_started = self.loop.time()
        self.in_head = True
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        self.head_started = None
        self.in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self.refuse(431, "request header fields are too large")
            return
        self.body_open = True
        super().on_headers_complete()
        if self.draining:
            self.shutdown()  # answer this request, then close the connection

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.body_open = False
        if not self.refused:
            super().on_message_complete()

    # limits

    def refuse(self, status: int, reason: str) -> None:
        """Answer `status` with `reason` and close, without involving the app."""
        self.refused = True
        self.head_started = None
        self.in_head = self.body_open = False
        if self.transport.is_closing():
            return
        phrase = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
        body = f"{reason}\n".encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, phrase.encode(), len(body), body)
        )
        self.transport.close()

    def check_timeouts(self, now: float) -> None:
        """Close this connection if its head or body has been stuck too long."""
        if self.refused or self.transport is None or self.transport.is_closing():
            return
        if self.head_started is not None and now - self.head_started > self.head_timeout:
            if self.in_head:
                self.refuse(408, f"request head not received within {self.head_timeout:g} s")
            else:  # opened and never used
                self.refused = True
                self.transport.close()
        elif self.body_open and now - self.last_progress > self.body_timeout:
            self.refuse(408, f"request body stalled for over {self.body_timeout:g} s")

    def may_close_for_drain(self) -> bool:
        """True when closing now loses nothing the client has sent (for draining).

        A head or body partly received, or request bytes waiting in the
        kernel's buffer, keep the connection open until that request is answered.
        """
        if self.body_open or self.in_head:
            return False
        return unread_bytes(self.transport) == 0


def unread_bytes(transport: Any) -> int:
    """Bytes received by the kernel but not read yet (FIONREAD); 0 when unknown."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    try:
        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except (OSError, ValueError):
        return 0
    return int(count[0])


def sweep(connections: Iterable[Any], now: float, *, restart: bool = False) -> None:
    """Apply the timeouts to every guarded connection.

    `restart` (the worker's loop was blocked, e.g. by a long prediction)
    restarts every clock instead: bytes may have arrived that the loop has not
    read yet, so no client can be blamed for the time.
    """
    for connection in list(connections):
        if not isinstance(connection, GuardedHttpToolsProtocol):
            continue
        if restart:
            connection.last_progress = now
            if connection.head_started is not None:
                connection.head_started = now
        else:
            connection.check_timeouts(now)


def guarded_class(
    base: type[GuardedHttpToolsProtocol],
    *,
    max_head_bytes: int,
    head_timeout: float,
    body_timeout: float,
) -> type[GuardedHttpToolsProtocol]:
    """A subclass of `base` with the limits baked in (uvicorn builds protocols by class)."""
    return type(
        base.__name__,
        (base,),
        {
            "max_head_bytes": max_head_bytes,
            "head_timeout": head_timeout,
            "body_timeout": body_timeout,
            "__module__": base.__module__,
        },
    )
