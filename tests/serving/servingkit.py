"""Helpers shared by the serving tests (a uniquely named module, imported directly).

The fixtures in conftest.py use these; tests import them by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import joblib
import numpy as np

HERE = Path(__file__).resolve().parent
FEATURES = 4


def write_model(directory: Path, estimator: object, metadata: dict | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, directory / "model.joblib")
    if metadata is not None:
        (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def training_data(rows: int = 400, features: int = FEATURES, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    return x, rng


def csv_rows(x: np.ndarray) -> bytes:
    return "\n".join(",".join(map(repr, row)) for row in x.tolist()).encode() + b"\n"


def invocation_headers(
    content_type: str | None, accept: str | None, attributes: str | None = None
) -> dict[str, str]:
    """Headers for POST /invocations, leaving out the ones given as None."""
    named = {
        "content-type": content_type,
        "accept": accept,
        "x-amzn-sagemaker-custom-attributes": attributes,
    }
    return {name: value for name, value in named.items() if value is not None}


# ---------------------------------------------------------------- subprocesses


def short_limits_env() -> dict[str, str]:
    """`serve` environment for the fault tests: 2 s head/body timeouts, 16 KiB heads,
    and this directory on PYTHONPATH (for `serving_faulty_estimator`)."""
    return {
        "SERVING_HEADER_TIMEOUT": "2",
        "SERVING_BODY_TIMEOUT": "2",
        "SERVING_MAX_HEADER_KB": "16",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_executable() -> str:
    """The `serve` console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("serve")
    assert script.exists(), f"`serve` is not installed next to {sys.executable}"
    return str(script)


def serve_env(model_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVING_", "SAGEMAKER_", "MODEL_DIR"))
    }
    env.update(
        MODEL_DIR=str(model_dir),
        SERVING_HOST="127.0.0.1",
        SAGEMAKER_BIND_TO_PORT=str(port),
        SERVING_WORKERS="2",
    )
    env.update(extra)
    return env


@dataclass
class ServeProcess:
    """A running `serve` subprocess on 127.0.0.1, its log in a file."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"serve not ready after {timeout} s:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)

    def stop(self, timeout: float = 30) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for pid in self.worker_pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid`, from /proc (Linux)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return sorted(out)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def start_serve(
    model_dir: Path, log_dir: Path, *args: str, port: int | None = None, **env: str
) -> ServeProcess:
    port = port or free_port()
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [serve_executable(), *args],
            env=serve_env(model_dir, port, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServeProcess(proc, port, log_path)


@contextlib.contextmanager
def running_serve(model_dir: Path, log_dir: Path, *args: str, **env: str) -> Iterator[ServeProcess]:
    server = start_serve(model_dir, log_dir, *args, **env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class InProcessClient:
    """Synchronous calls into an ASGI app, no sockets (httpx's ASGI transport)."""

    def __init__(self, app) -> None:
        self.app = app

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return asyncio.run(call())
