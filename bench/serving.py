"""Serving throughput and cold start: HTTP against `serve` vs the in-process floor.

Run: `uv run python bench/serving.py` (add `--help` for knobs). Prints, in one
run and on the same payloads:

* throughput of 6 MiB CSV MultiRecord payloads (20 features) sent over real
  HTTP on 127.0.0.1 to a `serve` subprocess by as many concurrent clients as it
  has workers, next to the floor: `serving.inference.transform` called
  directly by a pool of as many processes (same code, same cores, no HTTP);
  rows/s, MB/s and the ratio HTTP/floor (target >= 0.85);
* cold start: seconds from starting `serve` to the first 200 from /ping and to
  the first prediction, next to the floor: a plain process importing the
  serving libraries and loading the model (target: first prediction <= 1.3x);
* small requests (1-row, 1/2/8/32 keep-alive clients: req/s, p50, p99,
  connections closed; `--baseline REF` adds `serve` at that git revision,
  side by side) and the `serving.protocol` A/B: see `bench/connections.py`.

Both sides get the same process set-up (`serving.runtime`: native thread
caps, allocator tuning, frozen heap) and warm up first. Floor and HTTP run in short
alternating rounds so that other load on the machine hits both alike; the
wall-clock ratio is still sensitive to it, so the CPU time per row of each side
(server workers + client vs floor processes) is printed as well. The HTTP
client is a minimal HTTP/1.1 client on raw sockets, so that client overhead,
which shares the cores, stays small; each client keeps its connection across
rounds, as Batch Transform does (`serve` hands each new connection to the
least-loaded worker and keeps it open; the number of reconnects is printed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MIB = 1024 * 1024
HERE = Path(__file__).resolve().parent
# Run as a script, this file's directory comes first on sys.path and its name
# would shadow the `serving` package: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


# ------------------------------------------------------------------ fixtures


def make_model(directory: Path, features: int) -> None:
    """A StandardScaler + LogisticRegression pipeline, like a typical tabular model."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, features))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    (directory / "metadata.json").write_text(
        json.dumps({"feature_count": features, "class_labels": [0, 1], "created_by": "bench"})
    )


def make_payloads(count: int, size: int, features: int) -> list[bytes]:
    """CSV payloads of at most `size` bytes, whole lines, floats as pandas writes them."""
    rng = np.random.default_rng(1)
    payloads = []
    for _ in range(count):
        lines: list[bytes] = []
        total = 0
        while True:
            block = rng.normal(size=(2000, features))
            for row in block.tolist():
                line = (",".join(map(repr, row)) + "\n").encode()
                if total + len(line) > size:
                    break
                lines.append(line)
                total += len(line)
            else:
                continue
            break
        payloads.append(b"".join(lines))
    return payloads


MIXED_NUMBERS = [f"n{i}" for i in range(10)]
MIXED_TEXTS = [f"c{i}" for i in range(5)]


def mixed_frame(rows: int, seed: int):
    """10 numeric + 5 categorical columns (8 levels each), ~2% of cells missing."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 10)), columns=MIXED_NUMBERS)
    for index, name in enumerate(MIXED_TEXTS):
        frame[name] = rng.choice([f"{name}_level{k}" for k in range(8)], rows)
        frame.loc[rng.random(rows) < 0.02, name] = None
        frame.loc[rng.random(rows) < 0.02, MIXED_NUMBERS[index]] = np.nan
    return frame


def make_mixed_model(directory: Path) -> None:
    """A DataFrame pipeline: one-hot on strings, scaling on numbers, with imputers, as users fit."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = mixed_frame(5000, seed=0)
    y = (frame["n0"].fillna(0) + (frame["c0"] == "c0_level1") > 0.3).astype(int)
    encode = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    scale = make_pipeline(SimpleImputer(), StandardScaler())
    transformer = ColumnTransformer(
        [("text", encode, MIXED_TEXTS), ("numbers", scale, MIXED_NUMBERS)]
    )
    model = make_pipeline(transformer, LogisticRegression()).fit(frame, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")  # no metadata: a user's own model


def make_mixed_payloads(count: int, size: int) -> list[bytes]:
    """Headerless CSV of `mixed_frame` rows, at most `size` bytes each, whole lines."""
    payloads = []
    for seed in range(count):
        text = mixed_frame(size // 150, seed=1 + seed).to_csv(header=False, index=False).encode()
        payloads.append(text[: text.rindex(b"\n", 0, size) + 1])
    return payloads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_serve(model_dir: Path, workers: int, port: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        MODEL_DIR=str(model_dir),
        SERVING_WORKERS=str(workers),
        SERVING_HOST="127.0.0.1",
        SAGEMAKER_BIND_TO_PORT=str(port),
    )
    return subprocess.Popen(
        [serve_command()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def serve_command() -> str:
    candidate = Path(sys.executable).with_name("serve")
    if not candidate.exists():
        raise SystemExit(f"no `serve` script next to {sys.executable}; run with `uv run`")
    return str(candidate)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Poll GET /ping until 200; return the perf_counter time it first answered."""
    deadline = time.perf_counter() + timeout
    request = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode} before becoming ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter()
        except OSError:
            time.sleep(0.01)
    raise SystemExit("serve did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


# ---------------------------------------------------------------- cold start


FLOOR_SNIPPET = (
    "import sys; from serving.model_loading import load_model; import serving.inference; "
    "load_model(sys.argv[1]); print('loaded', flush=True)"
)


def cold_floor(model_dir: Path, snippet: str = FLOOR_SNIPPET) -> float:
    """Seconds until a plain process has imported the libraries and loaded the model.

    Timed to the moment it says so, not to its exit (interpreter teardown is
    no part of start-up).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", snippet, str(model_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.wait()
    if line.strip() != "loaded":
        raise SystemExit("the cold-start floor process failed")
    return elapsed


def cold_serve(model_dir: Path, workers: int, probe: bytes) -> tuple[float, float]:
    port = free_port()
    start = time.perf_counter()
    proc = start_serve(model_dir, workers, port)
    try:
        ready = wait_ready(port, proc) - start
        client = RawClient(port)
        status, _ = client.post("/invocations", probe)
        first = time.perf_counter() - start
        client.close()
        if status != 200:
            raise SystemExit(f"first prediction failed with {status}")
    finally:
        stop(proc)
    return ready, first


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--payload-mib", type=float, default=6.0)
    parser.add_argument("--payloads", type=int, default=4, help="distinct payloads to cycle")
    parser.add_argument("--requests", type=int, default=12, help="requests per client per round")
    parser.add_argument("--pairs", type=int, default=10, help="alternating floor/HTTP round pairs")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument(
        "--models",
        default="numeric,mixed",
        help="comma-separated: numeric (array model), mixed (DataFrame pipeline, 10 numeric "
        "+ 5 categorical columns)",
    )
    sys.path.insert(0, str(HERE.parent))  # for `bench.connections`
    from bench.connections import add_arguments, run_connections

    add_arguments(parser)  # small requests (1/2/8/32 clients) and the protocol A/B
    args = parser.parse_args()

    # Same native thread caps in the floor processes as `serve` gives its workers
    # (inherited through the environment by the spawned floor processes).
    from serving.runtime import limit_native_threads

    limit_native_threads(args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        for kind in args.models.split(","):
            print(f"\n=== {kind} model")
            run_all(args, tmp / kind, kind)
        run_connections(args, tmp / "connections")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (others' work shares these CPUs)")


def run_all(args: argparse.Namespace, model_dir: Path, kind: str = "numeric") -> None:
    if kind == "mixed":  # the DataFrame path: floor and HTTP both decode into a DataFrame
        make_mixed_model(model_dir)
        payloads = make_mixed_payloads(args.payloads, int(args.payload_mib * MIB))
        columns = "10 numeric + 5 categorical columns"
    else:
        make_model(model_dir, args.features)
        payloads = make_payloads(args.payloads, int(args.payload_mib * MIB), args.features)
        columns = f"{args.features} features"
    rows_per_payload = [p.count(b"\n") for p in payloads]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"workers = clients = floor processes = {args.workers}"
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

    port = free_port()
    proc = start_serve(model_dir, args.workers, port)
    pool = FloorPool(model_dir, payloads, args.workers)
    clients = [RawClient(port) for _ in range(args.workers)]
    floors, https = [], []
    try:
        wait_ready(port, proc)
        # First connections (spread over the workers by serve), warm caches.
        run_http(clients, payloads, 4, expected)
        pool.round(2)

        def http_round() -> dict:
            return run_http(clients, payloads, args.requests, expected, proc.pid)

        # Short rounds, alternated (and the order swapped every pair), so that
        # load from other processes on the machine hits both sides alike.
        for pair in range(args.pairs):
            if pair % 2 == 0:
                floors.append(pool.round(args.requests))
                https.append(http_round())
            else:
                https.append(http_round())
                floors.append(pool.round(args.requests))
    finally:
        for client in clients:
            client.close()
        pool.close()
        stop(proc)

    def total(runs: list[dict]) -> tuple[float, float]:
        seconds = sum(r["seconds"] for r in runs)
        return (
            sum(r["rows_per_s"] * r["seconds"] for r in runs) / seconds,
            sum(r["mb_per_s"] * r["seconds"] for r in runs) / seconds,
        )

    print(f"\nthroughput over {args.pairs} alternating round pairs (MB = MiB of CSV request body)")
    floor_rows, floor_mb = total(floors)
    http_rows, http_mb = total(https)
    n = args.workers
    for name, rows, mb in (
        (f"in-process floor ({n} processes)", floor_rows, floor_mb),
        (f"HTTP serve ({n} workers, {n} clients)", http_rows, http_mb),
    ):
        print(f"{name:<36} {rows:>10,.0f} rows/s {mb:>7.1f} MB/s")
    pairs = [h["rows_per_s"] / f["rows_per_s"] for f, h in zip(floors, https, strict=True)]
    print(
        f"ratio HTTP/floor: {http_rows / floor_rows:.3f} overall, median of pairs "
        f"{statistics.median(pairs):.3f} (min {min(pairs):.3f}, max {max(pairs):.3f})  "
        "(target >= 0.85)"
    )
    print("  per pair: " + ", ".join(f"{r:.2f}" for r in pairs))
    print(
        f"  connections opened during the timed HTTP rounds: {sum(r['connects'] for r in https)} "
        f"(0 = the {n} clients kept theirs, each on its own worker)"
    )
    # CPU time per row is far less sensitive than wall time to other load on
    # the machine: it shows what HTTP costs on top of the same work.
    rows_floor = sum(r["rows_per_s"] * r["seconds"] for r in floors)
    rows_http = sum(r["rows_per_s"] * r["seconds"] for r in https)
    cpu_floor = sum(r["cpu"] for r in floors) / rows_floor * 1e6
    cpu_server = sum(r["server_cpu"] for r in https) / rows_http * 1e6
    cpu_client = sum(r["client_cpu"] for r in https) / rows_http * 1e6
    print(
        f"CPU per 1,000 rows: floor {cpu_floor:.2f} ms; HTTP {cpu_server + cpu_client:.2f} ms "
        f"(server {cpu_server:.2f} + client {cpu_client:.2f}); floor/HTTP "
        f"{cpu_floor / (cpu_server + cpu_client):.3f}, floor/server {cpu_floor / cpu_server:.3f}"
    )
    # Per core = per CPU-second (what an instance-hour buys); `bench/csv_decode.py`
    # breaks the decode share down by parser.
    mean_mib = statistics.mean(map(len, payloads)) / MIB
    mean_rows = statistics.mean(rows_per_payload)
    for name, per_row in (("floor", cpu_floor), ("HTTP server", cpu_server)):
        per_core = 1e6 / per_row
        print(
            f"per core ({name}): {per_core:,.0f} rows/s, {per_core / mean_rows * mean_mib:.1f} MB/s"
        )

    if args.cold_repeats < 1:
        return
    print("\ncold start (seconds from process start)")
    probe = payloads[0][: payloads[0].index(b"\n") + 1]
    floor_times, ready_times, first_times = [], [], []
    for _ in range(args.cold_repeats):
        floor_times.append(cold_floor(model_dir))
        ready, first = cold_serve(model_dir, args.workers, probe)
        ready_times.append(ready)
        first_times.append(first)
    f_med = statistics.median(floor_times)
    print(f"floor: import serving libraries + load model   {_fmt(floor_times)}")
    print(f"serve: first 200 from /ping                     {_fmt(ready_times)}")
    print(f"serve: first prediction                         {_fmt(first_times)}")
    print(
        f"ratio first prediction / floor (medians): {statistics.median(first_times) / f_med:.3f}"
        "  (target <= 1.3)"
    )


def _fmt(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})"
    )


if __name__ == "__main__":
    main()
