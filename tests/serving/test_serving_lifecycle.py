"""Process life: graceful SIGTERM with a request in flight, dead workers replaced."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from serving_slow_estimator import SlowClassifier
from servingkit import HERE, start_serve, write_model


@pytest.fixture
def slow_model_dir(tmp_path):
    return write_model(tmp_path / "model", SlowClassifier(seconds=3.0, n_features=2), None)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_sigterm_finishes_in_flight_requests_and_replaces_dead_workers(slow_model_dir, tmp_path):
    server = start_serve(
        slow_model_dir,
        tmp_path,
        "serve",
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    try:
        server.wait_ready()
        workers = server.worker_pids()
        assert len(workers) == 2

        # A worker killed outright is replaced by a fresh fork of the warm parent.
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(server.worker_pids()) == 2 and workers[0] not in server.worker_pids())
        assert server.client.get("/ping").status_code == 200

        # A 3-second request is in flight when SIGTERM arrives: it still completes.
        result: dict = {}

        def slow_request() -> None:
            result["response"] = httpx.post(
                server.url + "/invocations",
                content=b"1,2\n3,4\n",
                headers={"content-type": "text/csv"},
                timeout=30,
            )

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(1.0)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        response = result["response"]
        assert response.status_code == 200 and response.text == "1\n1"
        assert server.proc.wait(timeout=30) == 0
        assert time.monotonic() - sent < 15
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/ping", timeout=2)
        log = server.log()
        assert "received SIGTERM" in log and "Traceback" not in log
    finally:
        server.stop()
