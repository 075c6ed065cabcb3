"""Load: exact answers under concurrency, balance over workers, limits on bad clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from serving_faulty_estimator import FaultyRegressor
from servingkit import (
    FEATURES,
    csv_rows,
    rss_bytes,
    running_serve,
    short_limits_env,
    write_model,
)

from serving.inference import transform

CLIENTS = 16
REQUESTS_PER_CLIENT = 25


def make_requests(seed: int) -> list[tuple[bytes, str, str | None]]:
    rng = np.random.default_rng(seed)
    requests = []
    for i in range(REQUESTS_PER_CLIENT):
        x = rng.normal(size=(int(rng.integers(1, 3000)), FEATURES))
        kind = i % 4
        if kind == 0:
            requests.append((csv_rows(x), "text/csv", None))
        elif kind == 1:
            requests.append(
                (csv_rows(x), "text/csv; charset=utf-8", "text/csv; predict_proba=true")
            )
        elif kind == 2:
            requests.append(
                (json.dumps({"instances": x.tolist()}).encode(), "application/json", None)
            )
        else:
            body = "\n".join(json.dumps(r) for r in x.tolist()).encode()
            requests.append((body, "application/jsonlines", "application/json"))
    return requests


def test_concurrent_clients_get_exact_answers(binary_server, binary_model):
    plans = [make_requests(seed) for seed in range(CLIENTS)]
    expected = [
        [transform(binary_model, body, ctype, accept) for body, ctype, accept in plan]
        for plan in plans
    ]
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        with httpx.Client(base_url=binary_server.url, timeout=120) as http:
            start.wait()
            for (body, ctype, accept), (want, want_type) in zip(
                plans[index], expected[index], strict=True
            ):
                headers = {"content-type": ctype}
                if accept:
                    headers["accept"] = accept
                try:
                    response = http.post("/invocations", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"client {index}: {exc!r}")
                    continue
                if response.status_code != 200:
                    failures.append(f"client {index}: {response.status_code} {response.text}")
                elif response.content != want or not response.headers["content-type"].startswith(
                    want_type
                ):
                    failures.append(f"client {index}: answer differs from in-process transform")
                else:
                    with lock:
                        done[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert done[0] == CLIENTS * REQUESTS_PER_CLIENT
    assert binary_server.client.get("/ping").status_code == 200


# ------------------------------------------------- balance and client limits

LIMITS = short_limits_env()  # as pid_server's (conftest.py)
ONE_ROW = b"1,2\n"


def request(body: bytes = ONE_ROW) -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nhost: t\r\ncontent-type: text/csv\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines[1:])
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    while len(rest) < int(headers.get("content-length", "0")):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `sock`, or None if still open after `seconds`."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def test_keepalive_clients_spread_evenly_and_stay_connected(pid_server):
    """8 keep-alive clients on 2 workers: 4 each, and no answer closes a connection."""
    socks = [socket.create_connection(("127.0.0.1", pid_server.port)) for _ in range(8)]
    try:
        pids: list[int] = []
        closes = 0
        for round_ in range(25):
            for sock in socks:
                sock.sendall(request())
            for index, sock in enumerate(socks):
                status, headers, body = read_response(sock)
                assert status == 200
                closes += headers.get("connection", "").lower() == "close"
                if round_ == 0:
                    pids.append(int(body))
                else:
                    assert int(body) == pids[index]  # still the same connection and worker
    finally:
        for sock in socks:
            sock.close()
    assert closes == 0
    assert sorted(pids.count(pid) for pid in set(pids)) == [4, 4]


def test_oversized_request_head_gets_431_and_the_server_serves_on(pid_server):
    for name, value in (("x-big", b"a" * 20_000), ("x-many", None)):
        with socket.create_connection(("127.0.0.1", pid_server.port), timeout=10) as sock:
            if value is None:  # many small headers adding up
                extra = b"".join(b"x-h%d: %s\r\n" % (i, b"b" * 90) for i in range(300))
            else:
                extra = name.encode() + b": " + value + b"\r\n"
            head = request()
            sock.sendall(head.replace(b"host: t\r\n", b"host: t\r\n" + extra))
            status, headers, body = read_response(sock)
            assert status == 431 and headers["connection"] == "close", (name, status)
            assert b"too large" in body
    response = httpx.post(
        pid_server.url + "/invocations", content=ONE_ROW, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200


def test_endless_request_head_is_cut_off_before_it_is_all_read(pid_server):
    """A 64 MiB header is refused once past the limit, not buffered whole."""
    with socket.create_connection(("127.0.0.1", pid_server.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nhost: t\r\nx-endless: ")
        sent = 0
        with pytest.raises(OSError):
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 8 * 1024 * 1024  # the server stopped reading and closed early


def test_stalled_head_and_stalled_body_get_408(pid_server):
    with (
        socket.create_connection(("127.0.0.1", pid_server.port)) as idle,
        socket.create_connection(("127.0.0.1", pid_server.port)) as head,
        socket.create_connection(("127.0.0.1", pid_server.port)) as body,
    ):
        head.sendall(b"POST /invocations HTTP/1.1\r\nhost: t\r\n")
        body.sendall(request(b"1,2\n3,4\n")[:-5])
        started = time.monotonic()
        got = {name: closed_within(sock, 6) for name, sock in [("head", head), ("body", body)]}
        assert closed_within(idle, 1) is not None  # opened, never used: closed too
        assert time.monotonic() - started < 6
    assert got["head"] is not None and got["head"].startswith(b"HTTP/1.1 408")
    assert got["body"] is not None and got["body"].startswith(b"HTTP/1.1 408")


# The attack runs in its own process, so the normal client's timings are not
# the attacker's Python threads competing with it for the GIL.
SLOWLORIS = """
import json, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
opened, cut_off = {}, []
end = time.monotonic() + seconds
while time.monotonic() < end:
    while len(opened) < count:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /invocations HTTP/1.1\\r\\n")
        sock.setblocking(False)
        opened[sock] = time.monotonic()
    for sock, since in list(opened.items()):
        try:
            sock.send(b"x")
            if sock.recv(100) == b"":
                raise ConnectionError
        except BlockingIOError:
            continue
        except OSError:
            cut_off.append(time.monotonic() - since)
            del opened[sock]
            sock.close()
    time.sleep(0.2)
print(json.dumps(cut_off))
"""


@pytest.mark.slow
def test_slowloris_leaves_normal_clients_unaffected(pid_server):
    """500 connections sending their heads a byte at a time; p50/p99 of a normal client."""
    port = pid_server.port

    def latencies(seconds: float) -> list[float]:
        out = []
        with socket.create_connection(("127.0.0.1", port)) as sock:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                start = time.perf_counter()
                sock.sendall(request())
                assert read_response(sock)[0] == 200
                out.append(time.perf_counter() - start)
        return out

    quiet = latencies(3)
    attack = subprocess.Popen(
        [sys.executable, "-c", SLOWLORIS, str(port), "500", "8"], stdout=subprocess.PIPE
    )
    try:
        time.sleep(1.5)
        attacked = latencies(5)
        cut_off = json.loads(attack.communicate(timeout=60)[0])
    finally:
        attack.kill()
        attack.wait()

    def p(values: list[float], q: float) -> float:
        return float(np.quantile(values, q)) * 1000

    print(
        f"\nnormal client, 1-row requests: quiet p50 {p(quiet, 0.5):.1f} ms p99 "
        f"{p(quiet, 0.99):.1f} ms ({len(quiet)} requests); with 500 slowloris connections "
        f"p50 {p(attacked, 0.5):.1f} ms p99 {p(attacked, 0.99):.1f} ms ({len(attacked)}); "
        f"{len(cut_off)} slow connections cut off after median {np.median(cut_off):.1f} s"
    )
    assert len(cut_off) >= 500  # every attacker connection was cut off (header timeout 2 s)
    assert float(np.median(cut_off)) < 2 + 2  # timeout, 1 s sweep, attacker's loop
    assert p(attacked, 0.5) < 3 * p(quiet, 0.5) + 2
    assert p(attacked, 0.99) < 3 * p(quiet, 0.99) + 20


@pytest.mark.slow
def test_connections_over_the_per_worker_cap_get_503(tmp_path):
    model_dir = write_model(tmp_path / "model", FaultyRegressor(), {"feature_count": 2})
    with running_serve(model_dir, tmp_path, "serve", SERVING_MAX_CONNECTIONS="3", **LIMITS) as srv:
        socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(6)]
        try:
            for sock in socks:
                sock.sendall(request())
                assert read_response(sock)[0] == 200
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as extra:
                extra.sendall(request())
                assert read_response(extra)[0] == 503
            socks.pop().close()
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as again:
                again.sendall(request())
                assert read_response(again)[0] == 200
        finally:
            for sock in socks:
                sock.close()


CSV_HEADERS = {"content-type": "text/csv"}


def test_csv_parser_buffers_are_returned_once_idle(tmp_path):
    """The simdjson parser a worker keeps between 6 MiB requests is freed when it idles."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2_000, 20))  # 8+ columns: simdjson reads them first
    model_dir = write_model(tmp_path / "wide", LinearRegression().fit(x, x.sum(axis=1)), None)
    block = csv_rows(x)
    body = block * (6 * 1024 * 1024 // len(block))
    with running_serve(model_dir, tmp_path, "serve", SERVING_WORKERS="1") as server:
        (worker,) = server.worker_pids()
        before = rss_bytes(worker)
        for _ in range(2):
            answer = server.client.post("/invocations", content=body, headers=CSV_HEADERS)
            assert answer.status_code == 200
        busy = rss_bytes(worker)
        mib = 1024 * 1024
        deadline = time.monotonic() + 8  # idle for a second, the worker drops the parser, trims
        while (idle := rss_bytes(worker)) - before >= 8 * mib and time.monotonic() < deadline:
            time.sleep(0.25)
    print(f"\nworker RSS MiB: before {before // mib}, busy {busy // mib}, idle {idle // mib}")
    assert busy - before > 16 * mib  # the parser's buffers, kept for the next request
    assert idle - before < 8 * mib


@pytest.mark.slow
def test_memory_kept_for_large_requests_is_returned_once_idle(binary_dir, tmp_path):
    """After two concurrent 100 MiB requests the free heap goes back to the kernel."""
    rng = np.random.default_rng(0)
    block = csv_rows(rng.normal(size=(20_000, FEATURES)))
    body = block * (100 * 1024 * 1024 // len(block))
    with running_serve(binary_dir, tmp_path, "serve", SERVING_WORKERS="1") as server:
        (worker,) = server.worker_pids()
        before = rss_bytes(worker)

        def post() -> None:
            response = httpx.post(
                server.url + "/invocations",
                content=body,
                headers={"content-type": "text/csv"},
                timeout=300,
            )
            assert response.status_code == 200

        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        busy = rss_bytes(worker)
        time.sleep(3)  # idle for over a second: the worker trims
        idle = rss_bytes(worker)
        log = server.log()
    mib = 1024 * 1024
    print(
        f"\nworker RSS before {before / mib:.0f} MiB, after 2 x 100 MiB {busy / mib:.0f} MiB, "
        f"3 s idle {idle / mib:.0f} MiB"
    )
    assert "MiB of free heap to the kernel" in log, log
    assert busy - idle > 16 * mib
