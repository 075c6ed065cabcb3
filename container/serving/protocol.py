"""uvicorn's httptools protocol, reading request bodies straight into their final buffer.

Why: with stock uvicorn (0.54) and uvloop, a request body is copied four times
in user space before the app sees it: uvloop turns each socket read into a new
`bytes`, httptools copies the body part of that into another `bytes` for
`on_body`, uvicorn appends those to a bytearray (`cycle.body += body`), and
`receive()` copies that with `bytes(self.body)`. For the 6 MiB CSV requests
Batch Transform sends, dropping the copies took ~2 ms of CPU off each request
(`bench/serving.py`), a tenth of the parse + predict time itself.

Here, a request that declares one Content-Length between `DIRECT_MIN_BYTES`
and the body limit gets a `bytes` object of that length up front, and the
event loop reads the rest of the body straight into it (`get_buffer` hands it
a view of the part still empty): the kernel copies the body into its final
place and nothing copies it again. The app receives that one object, whole,
in a single `http.request` message. The request head, and the first body
bytes read with it, go through a small scratch buffer and httptools as usual;
once the body is complete, the parser (which never saw the rest of it) is
replaced by a fresh one for the next request on the connection.

Anything else (small bodies, no or several Content-Length headers, chunked,
over the limit, a pipelined request) is parsed by httptools; with a single
Content-Length within the limit its chunks are queued and passed on as they
are, one message each, otherwise uvicorn's own path takes it. The app's own
413 check stays in force on every path.

It is built on `serving.limits`' protocol, so the header size limit and the
head and body timeouts apply to it too. Relies on uvicorn internals
(`HttpToolsProtocol.__init__/data_received/on_headers_complete/on_body/
on_message_complete/connection_lost`,
`RequestResponseCycle` attributes); `test_protocol_uvicorn_internals_unchanged`
pins them so an upgrade fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from serving.limits import GuardedHttpToolsProtocol

# Below this a body arrives with its head in a read or two: nothing to gain.
DIRECT_MIN_BYTES = 64 * 1024
_SCRATCH_BYTES = 64 * 1024


class _QueuedBodyCycle(RequestResponseCycle):
    """A request cycle whose body chunks wait in a queue instead of a bytearray."""

    chunks: deque[bytes]

    async def receive(self) -> Any:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        while not (self.chunks or self.disconnected or self.response_complete) and self.more_body:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.chunks.popleft() if self.chunks else b""
        return {
            "type": "http.request",
            "body": body,
            "more_body": self.more_body or bool(self.chunks),
        }


class DirectBodyHttpToolsProtocol(GuardedHttpToolsProtocol):
    """uvicorn's protocol, reading large bodies in place (see the module docstring).

    The event loop talks to it through `DirectBodyProtocol`, which builds it.
    """

    def __init__(self, *args: Any, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes = max_body_bytes
        self._scratch = memoryview(bytearray(_SCRATCH_BYTES))
        # The body being filled in place: the object the app will get, a
        # writable view of its storage, and how many bytes have arrived.
        self._body: bytes | None = None
        self._body_view: memoryview | None = None
        self._filled = 0
        self._reading_in_place = False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._reading_in_place:
            assert self._body_view is not None
            return self._body_view[self._filled :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if not self._reading_in_place:
            self.data_received(self._scratch[:nbytes])
            # The parser has seen the head (and the first body bytes, which
            # on_body put in place); the rest of the body goes straight in.
            self._reading_in_place = self._body is not None
            return
        self._unset_keepalive_if_required()
        self.last_progress = self.loop.time()
        self._filled += nbytes
        assert self._body_view is not None
        if self._filled == len(self._body_view):
            self.parser = _new_parser(self)
            self.on_message_complete()

    # httptools callbacks

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if self.refused or cycle is None or type(cycle) is not RequestResponseCycle:
            return
        if self.pipeline:
            return  # upgrade, or a pipelined request queued behind another one
        if cycle.scope is not self.scope:
            return  # no new cycle was made (an upgrade): the old one is not ours to change
        length = _content_length(self.headers)
        if length is None or length > self.max_body_bytes:
            return
        cycle.__class__ = _QueuedBodyCycle
        cycle.chunks = deque()
        if length >= DIRECT_MIN_BYTES and (unfilled := unfilled_bytes(length)) is not None:
            self._body, self._body_view = unfilled

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not _QueuedBodyCycle:
            super().on_body(body)
            return
        if self._body_view is not None:
            self._body_view[self._filled : self._filled + len(body)] = body
            self._filled += len(body)
            return
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return  # answered without reading (e.g. 415): drop the rest, as uvicorn does
        cycle.chunks.append(body)
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        body = self._body
        if body is not None:
            self._clear_body()
            if not self.cycle.response_complete:
                self.cycle.chunks.append(body)
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_body()
        super().connection_lost(exc)

    def _clear_body(self) -> None:
        self._body = self._body_view = None
        self._filled = 0
        self._reading_in_place = False


class DirectBodyProtocol(asyncio.BufferedProtocol):
    """What the event loop talks to: forwards everything to a `DirectBodyHttpToolsProtocol`.

    Why a separate object: uvloop reads into `get_buffer()` only for
    protocols that are not `asyncio.Protocol` subclasses, and uvicorn's is one.
    uvicorn builds this class with its usual arguments (`Config.http`); the body
    limit and the protocol class (with its limits) are class attributes, baked
    in by `protocol_class`.
    """

    max_body_bytes: int = 0
    http_class: type[DirectBodyHttpToolsProtocol] = DirectBodyHttpToolsProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.http = self.http_class(*args, max_body_bytes=self.max_body_bytes, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def eof_received(self) -> None:
        self.http.eof_received()

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.http.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.http.buffer_updated(nbytes)


def protocol_class(
    max_body_bytes: int,
    http_class: type[DirectBodyHttpToolsProtocol] = DirectBodyHttpToolsProtocol,
) -> type[DirectBodyProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with the body limit baked in."""
    return type(
        "DirectBodyProtocol",
        (DirectBodyProtocol,),
        {"max_body_bytes": max_body_bytes, "http_class": http_class, "__module__": __name__},
    )


def _new_parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A parser set up as `HttpToolsProtocol.__init__` sets up its own."""
    parser = httptools.HttpRequestParser(protocol)
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no leniencies
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The one Content-Length value if there is exactly one and no Transfer-Encoding."""
    found: int | None = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if found is not None or not value.isdigit():
                return None
            found = int(value)
    return found


# ------------------------------------------------------------- unfilled bytes


def unfilled_bytes(size: int) -> tuple[bytes, memoryview] | None:
    """A new `bytes` of `size` bytes not written yet, and a writable view of its storage.

    C code builds bytes objects this way (`PyBytes_FromStringAndSize(NULL,
    size)`, fill, then hand out); a `bytes` is what pandas' reader and the ASGI
    spec want, so the body needs no conversion afterwards. Rules: the object
    must not be hashed, compared or handed out before every byte is written,
    and the view must not outlive it. None where this cannot be done (not
    CPython, or `size` < 2, where CPython may return a shared object); the
    caller then takes the copying path.
    """
    if _allocate is None or size < 2:
        return None
    data = _allocate(None, size)
    return data, _storage(data)


def _storage(data: bytes) -> memoryview:
    """Writable view of a bytes object's storage (`ob_sval`, at the type's basic size - 1)."""
    address = id(data) + bytes.__basicsize__ - 1
    return memoryview((ctypes.c_char * len(data)).from_address(address)).cast("B")


def _bytes_allocator() -> Callable[[None, int], bytes] | None:
    """CPython's `PyBytes_FromStringAndSize`, once checked to work with `_storage`; else None."""
    try:
        allocate = ctypes.pythonapi.PyBytes_FromStringAndSize
        allocate.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t]
        allocate.restype = ctypes.py_object
        probe = allocate(None, 16)
        _storage(probe)[:] = b"filled in place!"
    except (AttributeError, OSError, TypeError, ValueError):
        return None
    return allocate if probe == b"filled in place!" else None


_allocate = _bytes_allocator()
