"""`serving.protocol`: request bodies reach the app uncopied, and correctly, on every path.

A real uvicorn server (in a thread, 127.0.0.1), on uvloop and on asyncio's own
loop, with the direct-body protocol and a small ASGI app that answers with
what it received, spoken to over raw sockets so that Content-Length, chunked,
pipelined, cut-off and `Expect: 100-continue` requests are exactly as written.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from servingkit import free_port
from uvicorn.protocols.http import httptools_impl

from serving import protocol
from serving.settings import Settings
from serving.worker import uvicorn_config

LIMIT = 4 * 1024 * 1024


async def echo_app(scope, receive, send) -> None:
    """Answers JSON: message count, body types, total size and sha256 of the body.

    On /early it answers at once, without reading the body (as a 415 does).
    """
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":
        await _answer(send, b'{"early": true}')
        return
    digest = hashlib.sha256()
    count, size, types = 0, 0, set()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        count += 1
        size += len(message["body"])
        types.add(type(message["body"]).__name__)
        digest.update(message["body"])
        if not message.get("more_body", False):
            break
    body = json.dumps(
        {"messages": count, "size": size, "types": sorted(types), "sha": digest.hexdigest()}
    ).encode()
    await _answer(send, body)


async def _answer(send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request) -> Iterator[int]:
    config = uvicorn_config(echo_app, Settings.from_env({"SERVING_MAX_BODY_MB": "4"}))
    assert issubclass(config.http_protocol_class, protocol.DirectBodyProtocol)
    config.loop = request.param
    port = free_port()
    config.host, config.port = "127.0.0.1", port
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.02)
    yield port
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def queued_receives(monkeypatch) -> list[int]:
    """Counts the messages delivered by the queued path (stays empty on uvicorn's own)."""
    calls: list[int] = []
    original = protocol._QueuedBodyCycle.receive

    async def counting(self):
        calls.append(1)
        return await original(self)

    monkeypatch.setattr(protocol._QueuedBodyCycle, "receive", counting)
    return calls


@pytest.fixture
def in_place(monkeypatch) -> list[int]:
    """Sizes of the socket reads that went straight into a body's own buffer."""
    reads: list[int] = []
    original = protocol.DirectBodyHttpToolsProtocol.buffer_updated

    def counting(self, nbytes: int) -> None:
        if self._reading_in_place:
            reads.append(nbytes)
        original(self, nbytes)

    monkeypatch.setattr(protocol.DirectBodyHttpToolsProtocol, "buffer_updated", counting)
    return reads


def exchange(port: int, raw: bytes, responses: int = 1, *, expect_continue: bool = False) -> list:
    """Send `raw`, read `responses` HTTP responses (Content-Length framed); JSON bodies."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if expect_continue:
            head, _, body = raw.partition(b"\r\n\r\n")
            sock.sendall(head + b"\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
        else:
            sock.sendall(raw)
        buffer = b""
        out = []
        while len(out) < responses:
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536) or pytest.fail("connection closed early")
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(buffer) < length:
                buffer += sock.recv(65536) or pytest.fail("connection closed early")
            out.append(json.loads(buffer[:length]))
            buffer = buffer[length:]
        return out


def post(body: bytes, *headers: str, path: str = "/echo") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def expected(body: bytes) -> tuple[int, str]:
    return len(body), hashlib.sha256(body).hexdigest()


def payload(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def test_large_body_is_read_in_place_and_arrives_whole(server, queued_receives, in_place):
    body = payload(3 * 1024 * 1024 + 7)
    (got,) = exchange(server, post(body, f"content-length: {len(body)}"))
    assert (got["size"], got["sha"]) == expected(body)
    assert got["types"] == ["bytes"]
    assert got["messages"] == len(queued_receives) == 1
    # All but what came in the head's read went straight into the body's buffer.
    assert len(body) - protocol.DIRECT_MIN_BYTES <= sum(in_place) < len(body)


def test_empty_and_small_bodies(server, queued_receives, in_place):
    empty, small = exchange(
        server, post(b"", "content-length: 0") + post(b"a,b\n", "content-length: 4"), 2
    )
    assert (empty["size"], small["size"]) == (0, 4)
    assert small["sha"] == expected(b"a,b\n")[1]
    assert in_place == []


def test_body_just_under_the_in_place_size_is_queued(server, queued_receives, in_place):
    body = payload(protocol.DIRECT_MIN_BYTES - 1)
    (got,) = exchange(server, post(body, f"content-length: {len(body)}"))
    assert (got["size"], got["sha"]) == expected(body)
    assert in_place == [] and queued_receives


def test_answer_before_the_body_is_read_keeps_the_connection_usable(server, in_place):
    big, small = payload(2 * 1024 * 1024), payload(10)
    early, after = exchange(
        server,
        post(big, f"content-length: {len(big)}", path="/early")
        + post(small, f"content-length: {len(small)}"),
        2,
    )
    assert early == {"early": True}
    assert (after["size"], after["sha"]) == expected(small)
    assert sum(in_place) > len(big) // 2


def test_client_gone_mid_body_leaves_the_server_serving(server, in_place):
    body = payload(2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(post(body, f"content-length: {len(body)}")[: 1024 * 1024])
        deadline = time.monotonic() + 10
        while not in_place and time.monotonic() < deadline:
            time.sleep(0.01)
    assert in_place, "the cut-off body was never read in place"
    (got,) = exchange(server, post(body, f"content-length: {len(body)}"))
    assert (got["size"], got["sha"]) == expected(body)


@pytest.mark.parametrize(
    "headers",
    [
        ("content-length: {n}", "content-length: {n}"),  # ambiguous: uvicorn decides
        ("transfer-encoding: chunked",),
    ],
)
def test_other_framings_take_uvicorns_path(server, queued_receives, in_place, headers):
    body = payload(300_000)
    if "transfer-encoding: chunked" in headers:
        raw = post(
            b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:100_000], body[100_000:]))
            + b"0\r\n\r\n",
            *headers,
        )
    else:
        raw = post(body, *(h.format(n=len(body)) for h in headers))
    try:
        results = exchange(server, raw)
    except (AssertionError, pytest.fail.Exception, OSError):
        results = []  # uvicorn may refuse a duplicated Content-Length (400): fine
    for got in results:
        assert (got["size"], got["sha"]) == expected(body)
    assert queued_receives == [] and in_place == []


def test_body_over_the_limit_takes_uvicorns_path(server, queued_receives, in_place):
    body = payload(LIMIT + 1)
    (got,) = exchange(server, post(body, f"content-length: {len(body)}"))
    assert (got["size"], got["sha"]) == expected(body)
    assert queued_receives == [] and in_place == []


def test_keep_alive_and_pipelined_requests(server, queued_receives):
    bodies = [payload(n) for n in (200_000, 5, 1_000_000, 300_000)]
    raw = b"".join(post(b, f"content-length: {len(b)}") for b in bodies)
    results = exchange(server, raw, len(bodies))
    assert [(r["size"], r["sha"]) for r in results] == [expected(b) for b in bodies]


def test_keep_alive_requests_one_after_another_are_each_read_in_place(server, in_place):
    bodies = [payload(n) for n in (700_000, 1_500_000, 90_000)]
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        for body in bodies:
            sock.sendall(post(body, f"content-length: {len(body)}"))
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536) or pytest.fail("connection closed early")
            head, _, rest = head.partition(b"\r\n\r\n")
            while not rest.endswith(b"}"):
                rest += sock.recv(65536) or pytest.fail("connection closed early")
            got = json.loads(rest)
            assert (got["size"], got["sha"]) == expected(body)
    assert in_place


def test_expect_100_continue(server, queued_receives, in_place):
    body = payload(500_000)
    (got,) = exchange(
        server,
        post(body, f"content-length: {len(body)}", "expect: 100-continue"),
        expect_continue=True,
    )
    assert (got["size"], got["sha"]) == expected(body)
    assert queued_receives and in_place


@pytest.mark.parametrize("size", [2, 3, 4096, 6 * 1024 * 1024])
def test_unfilled_bytes_are_a_bytes_object_written_through_the_view(size):
    unfilled = protocol.unfilled_bytes(size)
    assert unfilled is not None
    data, view = unfilled
    content = payload(size)
    view[:] = content
    assert type(data) is bytes and len(data) == size
    assert data == content and hash(data) == hash(content)
    assert not view.readonly and view.nbytes == size


@pytest.mark.parametrize("size", [0, 1])
def test_unfilled_bytes_refuses_sizes_cpython_may_share(size):
    assert protocol.unfilled_bytes(size) is None


# The uvicorn code serving.protocol and serving.limits build on, as of the
# pinned version. If this fails after an upgrade, re-read these methods in
# uvicorn/protocols/http/httptools_impl.py, check _QueuedBodyCycle,
# DirectBodyHttpToolsProtocol and GuardedHttpToolsProtocol against them (or
# drop serving.protocol), then update the hashes.
PINNED_UVICORN = "0.54.0"
PINNED_SOURCES = {
    "HttpToolsProtocol.__init__": "4f08999410347141",
    "HttpToolsProtocol.connection_made": "6efb565ff3d36b91",
    "HttpToolsProtocol.on_message_begin": "96d377fdc7c2baef",
    "HttpToolsProtocol.shutdown": "d7351fa33f00d430",
    "HttpToolsProtocol.data_received": "010a7ae59a5d3b1a",
    "HttpToolsProtocol.on_headers_complete": "1ea8589acfad92d8",
    "HttpToolsProtocol.on_body": "dba9c32aeba35b6a",
    "HttpToolsProtocol.on_message_complete": "1fbad42dc31fc01f",
    "HttpToolsProtocol.connection_lost": "c91a4c9bf2e29c55",
    "RequestResponseCycle.__init__": "4d2f220910c33c12",
    "RequestResponseCycle.receive": "8124ae006be71184",
}


def _source_hash(qualified: str) -> str:
    owner, name = qualified.split(".")
    source = inspect.getsource(getattr(getattr(httptools_impl, owner), name))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_protocol_uvicorn_internals_unchanged():
    changed = {
        name: _source_hash(name)
        for name, digest in PINNED_SOURCES.items()
        if _source_hash(name) != digest
    }
    assert uvicorn.__version__ == PINNED_UVICORN and not changed, (
        f"uvicorn {uvicorn.__version__} (serving.protocol was written against "
        f"{PINNED_UVICORN}); changed internals it relies on: {changed}"
    )
