"""Small requests over kept-alive connections, and what `serving.protocol` buys.

Run on its own (`uv run python bench/connections.py --help`) or from
`bench/serving.py`. Two sections, each alternating the servers round by round
so that other load on the machine hits them alike:

* small requests: 1-row CSV requests from 1, 2, 8 and 32 keep-alive clients
  (asyncio on raw sockets, one process): requests/s, p50, p99, and how many
  responses closed the connection (the client reconnects after each). With
  `--baseline REF`, the same run also measures `serve` as it was at that git
  revision (its `container/serving` exported to a temporary directory), and
  prints today's figures next to it as ratios;
* protocol A/B: 6 MiB CSV payloads from as many clients as workers, `serve` as
  shipped vs the same server with uvicorn's own httptools body path
  (`serving.protocol` off, the limits kept): rows/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as a script, this file's directory would come first on sys.path and
# shadow the `serving` package; the repository root makes `bench` importable.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]

# `serve` with uvicorn's own httptools body path instead of `serving.protocol`'s.
PLAIN_BODY_SERVE = (
    "import sys, serving.worker as s; config = s.uvicorn_config; "
    "s.uvicorn_config = lambda app, settings, direct_body=True: config(app, settings, "
    "direct_body=False); from serving.cli import main; sys.exit(main())"
)


@dataclass
class Variant:
    """One way to start the server: a command and extra environment."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def serve_variant() -> Variant:
    script = Path(sys.executable).with_name("serve")
    if not script.exists():
        raise SystemExit(f"no `serve` script next to {sys.executable}; run with `uv run`")
    return Variant("serve", [str(script)])


def plain_body_variant() -> Variant:
    return Variant("serve, uvicorn's body path", [sys.executable, "-c", PLAIN_BODY_SERVE])


def baseline_variant(ref: str, directory: Path) -> Variant:
    """`serve` as it was at git revision `ref` (its serving package only)."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "container/serving"],
        capture_output=True,
        check=False,
    )
    if archive.returncode:
        raise SystemExit(f"--baseline {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    return Variant(
        f"serve at {ref}",
        [sys.executable, "-m", "serving"],
        {"PYTHONPATH": str(directory / "container")},
    )


class Server:
    """A server variant running on a free port of 127.0.0.1."""

    def __init__(self, variant: Variant, model_dir: Path, workers: int) -> None:
        self.variant = variant
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = dict(
            os.environ,
            MODEL_DIR=str(model_dir),
            SERVING_WORKERS=str(workers),
            SERVING_HOST="127.0.0.1",
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            **variant.env,
        )
        self.proc = subprocess.Popen(
            variant.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.variant.name} exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(b"GET /ping HTTP/1.1\r\nhost: b\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{self.variant.name} did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------ small requests


def request_bytes(body: bytes) -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nhost: b\r\ncontent-type: text/csv\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _client(port: int, raw: bytes, stop_at: float, latencies: list[float]) -> int:
    """POST `raw` back to back until `stop_at`; returns responses that closed the connection."""
    closed = 0
    reader = writer = None
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert reader is not None
        start = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"request failed: {head[:80]!r}")
        if b"connection: close" in lower:
            closed += 1
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()
    return closed


def small_round(port: int, clients: int, seconds: float, body: bytes) -> dict[str, float]:
    """`clients` concurrent keep-alive clients for `seconds`: req/s, p50, p99 (ms), closed."""
    raw = request_bytes(body)

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        stop_at = asyncio.get_running_loop().time() + seconds
        start = time.perf_counter()
        closed = await asyncio.gather(
            *(_client(port, raw, stop_at, latencies) for _ in range(clients))
        )
        wall = time.perf_counter() - start
        latencies.sort()
        return {
            "req_s": len(latencies) / wall,
            "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
            "closed": sum(closed) / len(latencies),
        }

    return _run(main())


def _run(coroutine):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def run_small_requests(
    variants: Sequence[Variant],
    model_dir: Path,
    workers: int,
    body: bytes,
    client_counts: Sequence[int] = (1, 2, 8, 32),
    rounds: int = 5,
    seconds: float = 2.0,
) -> None:
    servers = [Server(v, model_dir, workers) for v in variants]
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for server in servers:  # warm: first connections, first requests
            small_round(server.port, max(client_counts), 0.5, body)
        for index in range(rounds):
            order = servers if index % 2 == 0 else servers[::-1]
            for clients in client_counts:
                for server in order:
                    got = small_round(server.port, clients, seconds, body)
                    results.setdefault((server.variant.name, clients), []).append(got)
    finally:
        for server in servers:
            server.stop()
    print(
        f"\nsmall requests: 1-row CSV, keep-alive clients, {workers} workers, "
        f"{rounds} rounds of {seconds:g} s, servers alternated"
    )
    print(
        f"{'clients':>7}  {'server':<28} {'req/s min/median/max':>24} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'closed':>7}"
    )
    first = variants[0].name
    for clients in client_counts:
        for variant in variants:
            runs = results[(variant.name, clients)]
            rates = [r["req_s"] for r in runs]
            print(
                f"{clients:>7}  {variant.name:<28} "
                f"{min(rates):>7.0f} /{statistics.median(rates):>7.0f} /{max(rates):>7.0f} "
                f"{statistics.median(r['p50'] for r in runs):>7.2f} "
                f"{statistics.median(r['p99'] for r in runs):>7.2f} "
                f"{statistics.median(r['closed'] for r in runs):>6.1%}"
            )
        for variant in variants[1:]:
            mine, theirs = results[(first, clients)], results[(variant.name, clients)]
            ratios = [a["req_s"] / b["req_s"] for a, b in zip(mine, theirs, strict=True)]
            p99 = [a["p99"] / b["p99"] for a, b in zip(mine, theirs, strict=True)]
            print(
                f"{'':>7}  ratio {first} / {variant.name}: req/s min {min(ratios):.2f} "
                f"median {statistics.median(ratios):.2f} max {max(ratios):.2f}; "
                f"p99 median {statistics.median(p99):.2f}"
            )


# -------------------------------------------------------------- protocol A/B


def run_protocol_ab(
    model_dir: Path, workers: int, payloads: list[bytes], rounds: int = 6, requests: int = 8
) -> None:
    """6 MiB payloads: `serve` as shipped vs uvicorn's own body path, rounds alternated."""
    from bench.throughput import RawClient, run_http
    from serving.inference import transform
    from serving.model_loading import load_model

    model = load_model(model_dir)
    expected = [transform(model, p, "text/csv", None)[0] for p in payloads]
    variants = [serve_variant(), plain_body_variant()]
    servers = [Server(v, model_dir, workers) for v in variants]
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    clients = {s.variant.name: [RawClient(s.port) for _ in range(workers)] for s in servers}
    try:
        for server in servers:
            run_http(clients[server.variant.name], payloads, 2, expected)
        for index in range(rounds):
            for server in servers if index % 2 == 0 else servers[::-1]:
                name = server.variant.name
                got = run_http(clients[name], payloads, requests, expected, server.proc.pid)
                rates[name].append(got["rows_per_s"])
                rows = got["rows_per_s"] * got["seconds"]
                cpu[name].append(got["server_cpu"] / rows * 1e6)
    finally:
        for group in clients.values():
            for client in group:
                client.close()
        for server in servers:
            server.stop()
    mine, plain = (v.name for v in variants)
    print(
        f"\nprotocol A/B: {len(payloads[0]) / 2**20:.1f} MiB CSV payloads, {workers} clients, "
        f"{rounds} rounds of {requests} requests per client, servers alternated"
    )
    for name in (mine, plain):
        r = rates[name]
        print(
            f"  {name:<28} rows/s min {min(r):>9,.0f} median {statistics.median(r):>9,.0f} "
            f"max {max(r):>9,.0f}; server CPU per 1,000 rows {statistics.median(cpu[name]):.2f} ms"
        )
    ratios = [a / b for a, b in zip(rates[mine], rates[plain], strict=True)]
    cpu_ratios = [b / a for a, b in zip(cpu[mine], cpu[plain], strict=True)]
    print(
        f"  ratio {mine} / {plain}: rows/s min {min(ratios):.3f} median "
        f"{statistics.median(ratios):.3f} max {max(ratios):.3f}; rows per server CPU second "
        f"median {statistics.median(cpu_ratios):.3f}  (keep serving.protocol only if >= 1.03)"
    )


# ---------------------------------------------------------------------- main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This bench's options (also offered by `bench/serving.py`)."""
    parser.add_argument("--small-rounds", type=int, default=5, help="0 skips small requests")
    parser.add_argument("--small-seconds", type=float, default=2.0, help="per small round")
    parser.add_argument("--baseline", help="git revision to compare with, e.g. HEAD")
    parser.add_argument("--protocol-rounds", type=int, default=6, help="0 skips the A/B")


def run_connections(args: argparse.Namespace, directory: Path) -> None:
    """Both sections, on a 20-feature model like bench/serving.py's numeric one."""
    from bench.fixtures import MIB, make_model, make_payloads

    model_dir = directory / "model"
    make_model(model_dir, 20)
    if args.small_rounds:
        variants = [serve_variant()]
        if args.baseline:
            variants.append(baseline_variant(args.baseline, directory / "baseline"))
        row = make_payloads(1, 1000, 20)[0]
        row = row[: row.index(b"\n") + 1]
        run_small_requests(
            variants,
            model_dir,
            args.workers,
            row,
            rounds=args.small_rounds,
            seconds=args.small_seconds,
        )
    if args.protocol_rounds:
        payloads = make_payloads(2, 6 * MIB, 20)
        run_protocol_ab(model_dir, args.workers, payloads, rounds=args.protocol_rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    add_arguments(parser)
    args = parser.parse_args()

    from serving.runtime import limit_native_threads

    limit_native_threads(args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-connections-"))
    try:
        run_connections(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (others' work shares these CPUs)")


if __name__ == "__main__":
    main()
