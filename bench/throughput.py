"""Big-payload throughput: HTTP against `serve` vs the in-process floor (and a baseline).

Run from `bench/serving.py`, which documents the section. Floor, HTTP to
`serve` and, with `--baseline REF`, HTTP to `serve` as it was at REF (see
`bench.connections.baseline_variant`) run in short rounds, their order rotated
every round, so that other load on the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import threading
import time
from pathlib import Path

from bench.connections import Server, Variant, serve_variant
from bench.fixtures import MIB, make_fixture

# --------------------------------------------------------------------- floor


def _floor_worker(model_dir: str, payloads: list[bytes], conn) -> None:
    """One floor process: set up and load like serve does, then run rounds on command."""
    from serving.runtime import freeze_heap, tune_allocator

    tune_allocator()
    from serving.inference import transform
    from serving.model_loading import load_model

    model = load_model(model_dir)
    transform(model, payloads[0], "text/csv", None)  # warm, as serve does before forking
    freeze_heap()
    conn.send("ready")
    offset = 0
    while (count := conn.recv()) is not None:
        start = time.perf_counter()
        cpu = time.process_time()
        rows = 0
        for _ in range(count):
            body, _ = transform(model, payloads[offset % len(payloads)], "text/csv", None)
            rows += body.count(b"\n") + 1
            offset += 1
        conn.send((start, time.perf_counter(), rows, count, time.process_time() - cpu))


class FloorPool:
    """`workers` processes calling transform() back to back: same code, same cores, no HTTP."""

    def __init__(self, model_dir: Path, payloads: list[bytes], workers: int) -> None:
        ctx = mp.get_context("spawn")  # fresh interpreters, like serve's own parent
        self.conns = []
        self.procs = []
        for _ in range(workers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_floor_worker, args=(str(model_dir), payloads, theirs))
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv() == "ready"
        self.payloads = payloads

    def round(self, requests: int) -> dict:
        for conn in self.conns:
            conn.send(requests)
        got = [conn.recv() for conn in self.conns]
        wall = max(g[1] for g in got) - min(g[0] for g in got)
        rows = sum(g[2] for g in got)
        summary = _summary(wall, rows, sum(g[3] for g in got), self.payloads)
        summary["cpu"] = sum(g[4] for g in got)
        return summary

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join()


# ---------------------------------------------------------------------- HTTP


class RawClient:
    """Keep-alive HTTP/1.1 POSTs on a plain socket; reconnects on `connection: close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.connects = 0

    def post(self, path: str, body: bytes, content_type: str = "text/csv") -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        if self.sock is None:
            self.connects += 1
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(head)
        self.sock.sendall(body)
        status, headers, payload = self._read_response()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def _read_response(self) -> tuple[int, dict[str, str], bytes]:
        assert self.sock is not None
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        parts = [rest]
        got = len(rest)
        while got < length:
            chunk = self.sock.recv(max(65536, length - got))
            if not chunk:
                raise ConnectionError("server closed the connection mid-response")
            parts.append(chunk)
            got += len(chunk)
        return status, headers, b"".join(parts)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def run_http(
    clients: list[RawClient],
    payloads: list[bytes],
    rounds: int,
    expected: list[bytes],
    server_pid: int | None = None,
) -> dict:
    """One thread per client, each POSTing `rounds` payloads; wall time (and CPU) over all.

    The clients (and their keep-alive connections) live across rounds, as Batch
    Transform's do across requests: a new connection per round would measure
    how the first connections of a burst land on the workers, not throughput.
    """
    workers = children_of(server_pid) if server_pid else []
    server_cpu = sum(map(process_cpu, workers))
    client_cpu = time.process_time()
    barrier = threading.Barrier(len(clients) + 1)
    connects = sum(c.connects for c in clients)
    results: list[tuple[int, int]] = []
    errors: list[str] = []

    def client(index: int) -> None:
        c = clients[index]
        rows = done = 0
        barrier.wait()
        for i in range(rounds):
            k = (i + index) % len(payloads)
            status, body = c.post("/invocations", payloads[k])
            if status != 200 or body != expected[k]:
                errors.append(f"status {status}, body differs: {body[:80]!r}")
            rows += body.count(b"\n") + 1
            done += 1
        results.append((rows, done))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu = sum(map(process_cpu, workers)) - server_cpu
    if errors:
        raise SystemExit(f"{len(errors)} HTTP errors, first: {errors[0]}")
    summary = _summary(wall, sum(r for r, _ in results), sum(d for _, d in results), payloads)
    summary["server_cpu"] = server_cpu
    summary["client_cpu"] = client_cpu
    summary["connects"] = sum(c.connects for c in clients) - connects
    return summary


def _summary(wall: float, rows: int, requests: int, payloads: list[bytes]) -> dict:
    mean_size = sum(map(len, payloads)) / len(payloads)
    return {
        "seconds": wall,
        "rows_per_s": rows / wall,
        "mb_per_s": requests * mean_size / MIB / wall,
        "requests": requests,
    }


# ---------------------------------------------------------------- the section


def _per_core(run: dict) -> float:
    """Rows per CPU second of the side that does the work (server workers, or floor)."""
    return run["rows_per_s"] * run["seconds"] / run.get("server_cpu", run.get("cpu", 0.0))


def _spread(values: list[float], fmt: str) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:{fmt}} / {mid:{fmt}} / {high:{fmt}}"


def _start_baseline(
    variant: Variant, model_dir: Path, workers: int, payloads: list[bytes], expected: list[bytes]
) -> Server | None:
    """Start the baseline; None (with the reason printed) if it cannot serve this model."""
    try:
        server = Server(variant, model_dir, workers)
    except SystemExit as error:  # Server says why in one line
        print(f"baseline skipped: {error}; it cannot serve this model")
        return None
    client = RawClient(server.port)
    try:
        status, body = client.post("/invocations", payloads[0])
    finally:
        client.close()
    if status == 200 and body == expected[0]:
        return server
    server.stop()
    why = f"answers {status}" if status != 200 else "answers 200 with different predictions"
    print(
        f"baseline skipped: {variant.name} {why} to this model's payload "
        f"({body[:100].decode(errors='replace').strip()!r}); it cannot serve this model"
    )
    return None


def run_throughput(
    args: argparse.Namespace, model_dir: Path, kind: str, baseline: Variant | None
) -> list[bytes]:
    """Floor vs `serve` (vs `baseline`) on 6 MiB payloads; returns the payloads used."""
    payloads, columns = make_fixture(
        kind, model_dir, args.payloads, int(args.payload_mib * MIB), args.features
    )
    rows_per_payload = [p.count(b"\n") for p in payloads]
    n = args.workers
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"workers = clients = floor processes = {n}"
    )
    print(
        f"payloads: {len(payloads)} x {statistics.mean(map(len, payloads)) / MIB:.2f} MiB CSV, "
        f"{columns}, ~{statistics.mean(rows_per_payload):.0f} rows each; "
        f"{args.requests} requests per client per round"
    )
    from serving.inference import transform
    from serving.model_loading import load_model

    model = load_model(model_dir)
    expected = [transform(model, p, "text/csv", None)[0] for p in payloads]

    floor = "in-process floor"
    servers = [Server(serve_variant(), model_dir, n)]
    pool = None
    clients: dict[str, list[RawClient]] = {}
    runs: dict[str, list[dict]] = {}
    try:
        if baseline is not None:
            started = _start_baseline(baseline, model_dir, n, payloads, expected)
            servers += [started] if started else []
        pool = FloorPool(model_dir, payloads, n)
        for server in servers:  # first connections (spread over the workers), warm caches
            clients[server.variant.name] = [RawClient(server.port) for _ in range(n)]
            run_http(clients[server.variant.name], payloads, 4, expected)
        pool.round(2)
        sides = [floor, *clients]
        runs = {side: [] for side in sides}
        for index in range(args.pairs):
            for side in sides[index % len(sides) :] + sides[: index % len(sides)]:
                if side == floor:
                    runs[side].append(pool.round(args.requests))
                else:
                    pid = next(s.proc.pid for s in servers if s.variant.name == side)
                    got = run_http(clients[side], payloads, args.requests, expected, pid)
                    runs[side].append(got)
    finally:
        for group in clients.values():
            for client in group:
                client.close()
        if pool is not None:
            pool.close()
        for server in servers:
            server.stop()
    _report(runs, floor, args, payloads)
    return payloads


def _report(
    runs: dict[str, list[dict]], floor: str, args: argparse.Namespace, payloads: list[bytes]
) -> None:
    """The table: rows/s and per core for each side, min/median/max over rounds, and ratios."""
    n = args.workers
    print(
        f"\nthroughput over {args.pairs} rounds, each running every side once, order rotated "
        "(MB = MiB of CSV request body; per core = rows per CPU second of the floor "
        "processes / server workers)"
    )
    print(f"{'':<36} {'rows/s min / median / max':>33}   {'per core min / median / max':>33}")
    for side, got in runs.items():
        name = f"{floor} ({n} processes)" if side == floor else f"HTTP {side} ({n} workers)"
        print(
            f"{name:<36} {_spread([r['rows_per_s'] for r in got], '>9,.0f')}   "
            f"{_spread([_per_core(r) for r in got], '>9,.0f')}"
        )
    http = [side for side in runs if side != floor]
    mine = http[0]
    for other, target in ((floor, "  (target >= 0.85)"), *((b, "") for b in http[1:])):
        pairs = list(zip(runs[mine], runs[other], strict=True))
        wall = [a["rows_per_s"] / b["rows_per_s"] for a, b in pairs]
        core = [_per_core(a) / _per_core(b) for a, b in pairs]
        print(
            f"ratio {mine} / {other}: rows/s {_spread(wall, '.3f')}; "
            f"per core {_spread(core, '.3f')}{target}"
        )
    for side in http:
        print(
            f"  connections opened by {side}'s {n} clients during the timed rounds: "
            f"{sum(r['connects'] for r in runs[side])} (0 = each kept its own, on its own worker)"
        )
    mine_runs = runs[mine]
    rows = sum(r["rows_per_s"] * r["seconds"] for r in mine_runs)
    server = sum(r["server_cpu"] for r in mine_runs) / rows * 1e6
    client = sum(r["client_cpu"] for r in mine_runs) / rows * 1e6
    floor_rows = sum(r["rows_per_s"] * r["seconds"] for r in runs[floor])
    cpu_floor = sum(r["cpu"] for r in runs[floor]) / floor_rows * 1e6
    print(
        f"CPU per 1,000 rows: floor {cpu_floor:.2f} ms; HTTP {mine} {server + client:.2f} ms "
        f"(server {server:.2f} + client {client:.2f}); floor/server {cpu_floor / server:.3f}"
    )
    # Per core = per CPU-second (what an instance-hour buys); `bench/csv_decode.py`
    # breaks the decode share down by parser.
    mib_per_row = (
        statistics.mean(map(len, payloads))
        / MIB
        / statistics.mean(p.count(b"\n") for p in payloads)
    )
    print(
        "per core, MB/s (medians): "
        + ", ".join(
            f"{side} {statistics.median(_per_core(r) for r in got) * mib_per_row:.1f}"
            for side, got in runs.items()
        )
    )
