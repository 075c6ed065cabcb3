"""The invocation client: retries, back-off, timeouts, stale keep-alive connections."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from model.batch.client import InvocationClient, InvocationError, IsolationGate


def client_for(port: int, **options) -> InvocationClient:
    settings = {"content_type": "text/csv", "accept": None, "timeout": 5, "max_retries": 0}
    settings.update(options)
    return InvocationClient("127.0.0.1", port, **settings)


def test_headers_are_the_jobs_content_type_and_accept(fake_server):
    server = fake_server()
    client_for(server.port, content_type="text/csv; charset=utf-8").invoke(b"a,1")
    client_for(server.port, accept="text/csv").invoke(b"a,1")
    first, second = server.headers
    assert first["Content-Type"] == "text/csv; charset=utf-8"
    assert "Accept" not in first  # SageMaker may send none; the server defaults it
    assert second["Accept"] == "text/csv"


def test_retries_back_off_exponentially(fake_server):
    server = fake_server(fail_first=3)
    pauses: list[float] = []
    client = client_for(server.port, max_retries=3, backoff=0.1, sleep=pauses.append)
    assert client.invoke(b"a,1").body == b"a\n"
    assert pauses == [0.1, 0.2, 0.4]


def test_a_4xx_is_final_at_once(fake_server):
    server = fake_server()
    with pytest.raises(InvocationError) as raised:
        client_for(server.port, max_retries=3).invoke(b"a,BAD")
    assert raised.value.status == 400
    assert raised.value.attempts == 1
    assert len(server.requests) == 1


def test_no_answer_within_the_timeout_is_a_failed_attempt(fake_server):
    server = fake_server(delay=1.0)
    started = time.perf_counter()
    with pytest.raises(InvocationError, match=r"no answer within InvocationsTimeoutInSeconds=0\.3"):
        client_for(server.port, timeout=0.3).invoke(b"a,1")
    assert time.perf_counter() - started < 0.9


def test_connection_refused_is_explained():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InvocationError, match="connection refused"):
        client_for(port).invoke(b"a,1")


def test_an_idle_connection_closed_by_the_server_is_reopened_without_a_retry(fake_server):
    server = fake_server(close_after_answer=True)
    client = client_for(server.port, max_retries=0)
    assert client.invoke(b"a,1").body == b"a\n"
    time.sleep(0.6)  # longer than the idle threshold: a keep-alive timeout, not a crash
    assert client.invoke(b"b,1").body == b"b\n"
    assert server.requests == [b"a,1", b"b,1"]


def test_connection_close_answers_are_followed(fake_server):
    """The real server answers `Connection: close` with several workers."""
    server = fake_server(announce_close=True)
    client = client_for(server.port, max_retries=0)
    for n in range(5):
        assert client.invoke(f"r{n},1".encode()).body == f"r{n}\n".encode()


def test_a_retry_after_a_worker_death_goes_alone_and_holds_new_requests(fake_server):
    """Only a death while alone fails a request: the retry waits for the requests in flight
    (they may share the dead worker) and the requests that come after it wait for it."""
    server = fake_server()
    gate = IsolationGate()
    in_flight, finish = threading.Event(), threading.Event()
    outcomes: dict[bytes, object] = {}

    def hold_a_request() -> None:
        with gate.hold(alone=False):
            in_flight.set()
            finish.wait(5)

    def invoke(payload: bytes) -> None:
        client = client_for(server.port, max_retries=3, backoff=0, gate=gate)
        try:
            outcomes[payload] = client.invoke(payload).body
        except InvocationError as error:
            outcomes[payload] = error

    threads = [
        threading.Thread(target=hold_a_request),
        threading.Thread(target=invoke, args=(b"x,CRASH",)),
    ]
    threads[0].start()
    in_flight.wait(5)
    threads[1].start()
    _wait_for(lambda: len(server.requests) == 1)  # the first attempt went beside the other
    time.sleep(0.2)  # its connection drops at once: the retry is now waiting to go alone
    threads.append(threading.Thread(target=invoke, args=(b"n,1",)))
    threads[2].start()
    time.sleep(0.3)
    assert server.requests == [b"x,CRASH"]  # the retry waits for the request in flight...
    finish.set()
    for thread in threads:
        thread.join(5)
    assert server.requests == [b"x,CRASH", b"x,CRASH", b"n,1"]  # ...and the newcomer for it
    failure = outcomes[b"x,CRASH"]
    assert isinstance(failure, InvocationError) and failure.crashes == 2
    assert failure.attempts == 2  # not 1 + max_retries: the lone death is conclusive
    assert outcomes[b"n,1"] == b"n\n"


def test_a_closed_gate_lets_every_waiter_through():
    """A run that stops (Ctrl-C, dead server) must not leave threads waiting at the gate."""
    gate = IsolationGate()
    passed = threading.Event()

    def go_alone() -> None:
        with gate.hold(alone=True):
            passed.set()

    with gate.hold(alone=False):
        waiter = threading.Thread(target=go_alone)
        waiter.start()
        assert not passed.wait(0.2)
        gate.close()
        assert passed.wait(5)
    waiter.join(5)
    with gate.hold(alone=False), gate.hold(alone=True):
        pass  # closed: nothing waits any more


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
