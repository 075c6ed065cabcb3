"""Serving throughput and cold start: HTTP against `serve` vs the in-process floor.

Run: `uv run python bench/serving.py` (add `--help` for knobs). Prints, in one
run and on the same payloads:

* throughput of 6 MiB CSV MultiRecord payloads (20 features) sent over real
  HTTP on 127.0.0.1 to a `serve` subprocess by as many concurrent clients as it
  has workers, next to the floor: `serving.inference.transform` called
  directly by a pool of as many processes (same code, same cores, no HTTP);
  rows/s, rows per CPU second ("per core") and the ratio HTTP/floor (target
  >= 0.85); with `--baseline REF`, `serve` as it was at that git revision
  too, in the same rotated rounds, and the ratio today/baseline (skipped, with
  the reason, for a model the baseline cannot serve). Code: `bench/throughput.py`;
* cold start: seconds from starting `serve` to the first 200 from /ping and to
  the first prediction, next to the floor: a plain process importing the
  serving libraries and loading the model (target: first prediction <= 1.3x);
* small requests (1-row, 1/2/8/32 keep-alive clients: req/s, p50, p99,
  connections closed; `--baseline REF` adds `serve` at that git revision,
  side by side) and the `serving.protocol` A/B: see `bench/connections.py`.

Floor and `serve` get the same process set-up (`serving.runtime`: native thread
caps, allocator tuning, frozen heap) and warm up first. Floor and HTTP run in short
rounds, order rotated, so that other load on the machine hits both alike; the
wall-clock ratio is still sensitive to it, so the CPU time per row of each side
(server workers + client vs floor processes) is printed as well. The HTTP
client is a minimal HTTP/1.1 client on raw sockets, so that client overhead,
which shares the cores, stays small; each client keeps its connection across
rounds, as Batch Transform does (`serve` hands each new connection to the
least-loaded worker and keeps it open; the number of reconnects is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this file's directory comes first on sys.path and its name
# would shadow the `serving` package: drop it, and make `bench` importable.
sys.path[:] = [str(HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]

# After the sys.path fix above; RawClient & co. are re-exported for the other benches.
from bench.connections import add_arguments, baseline_variant, run_connections  # noqa: E402
from bench.fixtures import MIB, free_port, make_model, make_payloads  # noqa: E402, F401
from bench.throughput import RawClient, children_of, process_cpu, run_throughput  # noqa: E402, F401


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
    parser.add_argument(
        "--pairs",
        type=int,
        default=10,
        help="throughput rounds; each runs the floor, serve (and the baseline) once",
    )
    parser.add_argument("--cold-repeats", type=int, default=3, help="0 skips cold start")
    parser.add_argument(
        "--models",
        default="numeric,mixed",
        help="comma-separated: numeric (array model), mixed (DataFrame pipeline, 10 numeric "
        "+ 5 categorical columns)",
    )
    add_arguments(parser)  # small requests (1/2/8/32 clients), the protocol A/B, --baseline
    args = parser.parse_args()

    # Same native thread caps in the floor processes as `serve` gives its workers
    # (inherited through the environment by the spawned floor processes).
    from serving.runtime import limit_native_threads

    limit_native_threads(args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        baseline = baseline_variant(args.baseline, tmp / "baseline") if args.baseline else None
        for kind in args.models.split(","):
            print(f"\n=== {kind} model")
            payloads = run_throughput(args, tmp / kind, kind, baseline)
            run_cold_start(args, tmp / kind, payloads)
        run_connections(args, tmp / "connections")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (others' work shares these CPUs)")


def run_cold_start(args: argparse.Namespace, model_dir: Path, payloads: list[bytes]) -> None:
    """Cold start of `serve` vs the floor, on the model and payloads just benchmarked."""
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
