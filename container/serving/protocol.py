"""uvicorn's httptools protocol, handing request body chunks to the app uncopied.

Why: stock uvicorn (0.54) appends every `on_body` chunk to a bytearray
(`cycle.body += body`, a copy plus reallocations), copies it again with
`bytes(self.body)` in `receive()`, and pauses reading whenever more than
64 KiB are waiting, so a 6 MiB request costs two extra user-space copies of
the body and one pause/resume round trip per socket read. The app keeps the
chunks as they come anyway (`serving.body.Body`), so those copies buy nothing.

Here, a request that declares one Content-Length within the body limit keeps
the `bytes` objects httptools hands to `on_body` in a queue and `receive()`
passes each one on as its own `http.request` message, unchanged. Reading is not
paused: the memory is bounded by the declared length, which is at most the
limit the app would buffer anyway. Anything else (no or several Content-Length
headers, chunked, over the limit, a pipelined request) takes uvicorn's normal
path, and the app's own 413 check stays in force for both paths.

Relies on uvicorn internals (`HttpToolsProtocol.on_headers_complete/on_body/
on_message_complete`, `RequestResponseCycle` attributes); the test
`test_protocol_uvicorn_internals_unchanged` pins them so an upgrade fails loudly.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


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


class QueuedBodyHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that queues body chunks (see module docstring).

    `max_body_bytes` is set by `serving.server.uvicorn_config` (a subclass per
    config), since uvicorn builds the protocol itself from `Config.http`.
    """

    max_body_bytes: int = 0

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or type(cycle) is not RequestResponseCycle or self.pipeline:
            return  # upgrade, or a pipelined request queued behind another one
        if cycle.scope is not self.scope:
            return  # no new cycle was made (an upgrade): the old one is not ours to change
        length = _content_length(self.headers)
        if length is None or length > self.max_body_bytes:
            return
        cycle.__class__ = _QueuedBodyCycle
        cycle.chunks = deque()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not _QueuedBodyCycle:
            super().on_body(body)
            return
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return  # answered without reading (e.g. 415): drop the rest, as uvicorn does
        cycle.chunks.append(body)
        cycle.message_event.set()


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


def protocol_class(max_body_bytes: int) -> type[QueuedBodyHttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with the body limit baked in."""
    return type(
        "QueuedBodyHttpToolsProtocol",
        (QueuedBodyHttpToolsProtocol,),
        {"max_body_bytes": max_body_bytes, "__module__": __name__},
    )
