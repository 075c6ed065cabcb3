"""Plain helpers shared by the image test's fixtures and tests (no fixtures here)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from .engine import Engine, EngineError

READY_TIMEOUT_S = 180.0
CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"

# Figures printed in the terminal summary (base build, image build, start-up, stop).
TIMINGS: dict[str, str] = {}


@dataclass(frozen=True)
class TrainedModel:
    """A model directory laid out as SageMaker unpacks model.tar.gz, plus test rows."""

    archive: Path  # model.tar.gz
    model_dir: Path  # the archive unpacked, mounted read-only at /opt/ml/model
    x: np.ndarray
    labels: list[str]  # model.predict(x) as strings: what CSV answers hold


@dataclass(frozen=True)
class MixedModel:
    """A DataFrame pipeline with string columns, unpacked; a headerless CSV body and its labels."""

    model_dir: Path
    body: bytes
    labels: list[str]


@dataclass(frozen=True)
class UserCodeModel:
    """A model directory with code/inference.py; the probabilities it must answer for x."""

    model_dir: Path
    probabilities: list[list[float]]


@dataclass(frozen=True)
class Container:
    """A running server: a container, or (name "host") a `serve` process."""

    name: str
    port: int | None  # host port on 127.0.0.1; None when started without a network
    container_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


StartContainer = Callable[..., Container]


def csv_body(x: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x).encode()


def json_body(x: np.ndarray) -> bytes:
    return json.dumps({"instances": x.tolist()}).encode()


def jsonlines_body(x: np.ndarray) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in x.tolist()).encode()


BODIES = {CSV: csv_body, JSON: json_body, JSONLINES: jsonlines_body}

# Runs inside a container started with --network=none: talks to the server on the
# container's own loopback with the image's python3 (there is no curl in the image).
_INSIDE_CLIENT = """
import base64, json, sys, urllib.error, urllib.request
method, url, content_type = sys.argv[1:4]
data = sys.stdin.buffer.read() if method == "POST" else None
req = urllib.request.Request(url, data=data, method=method)
if content_type:
    req.add_header("Content-Type", content_type)
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as err:
    status, body = err.code, err.read()
except OSError as err:
    status, body = 0, str(err).encode()
print(json.dumps({"status": status, "body": base64.b64encode(body).decode()}))
"""


def inside_request(
    engine: Engine,
    name: str,
    path: str,
    *,
    port: int = 8080,
    body: bytes | None = None,
    content_type: str = "",
) -> tuple[int, bytes]:
    """(status, body) of an HTTP request made inside the container to 127.0.0.1:port.

    Status 0 means the connection itself failed (nothing listening).
    """
    method = "GET" if body is None else "POST"
    proc = subprocess.run(
        [
            *engine.argv,
            "exec",
            "-i",
            name,
            "python3",
            "-c",
            _INSIDE_CLIENT,
            method,
            f"http://127.0.0.1:{port}{path}",
            content_type,
        ],
        input=body or b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise EngineError(f"exec in {name} failed: {proc.stderr.decode(errors='replace')}")
    answer = json.loads(proc.stdout)
    return answer["status"], base64.b64decode(answer["body"])


def wait_ready(engine: Engine, container: Container, timeout: float = READY_TIMEOUT_S) -> float:
    """Seconds until /ping answers 200; fails with the container's log if it exits or hangs."""
    started = time.monotonic()
    while True:
        state = engine.container_state(container.name)
        if not state.get("Running"):
            pytest.fail(
                f"container {container.name} exited ({state.get('ExitCode')}) before /ping "
                f"answered:\n{engine.logs(container.name)[-3000:]}",
                pytrace=False,
            )
        if container.port is None:
            status, _ = inside_request(
                engine, container.name, "/ping", port=container.container_port
            )
        else:
            try:
                status = httpx.get(f"{container.url}/ping", timeout=2).status_code
            except httpx.TransportError:
                status = 0
        if status == 200:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(
                f"/ping of {container.name} not 200 after {timeout:.0f} s:\n"
                f"{engine.logs(container.name)[-3000:]}",
                pytrace=False,
            )
        time.sleep(0.25)
