"""A model fitted on a DataFrame, served by `serve`: exact answers, fuzz, load.

The one-hot pipeline of dataframekit (saved without metadata) behind a real
`serve` on 127.0.0.1: every request shape answers as the model predicts
in-process, and, like the numeric model in test_serving_fuzz / _load, it
never answers 5xx to fuzzed bodies and gives exact answers to concurrent
clients.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from dataframekit import COLUMNS, JSON_PROBA, bodies, expected_json, fit, request_table, table
from servingkit import ServeProcess, running_serve, write_model


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory) -> Iterator[tuple[ServeProcess, Any]]:
    """`serve` on the one-hot model, saved without metadata."""
    model, _, _ = fit("onehot")
    directory = write_model(tmp_path_factory.mktemp("mixed"), model, None)
    with running_serve(directory, tmp_path_factory.mktemp("logs"), "serve") as server:
        yield server, model


def test_http_answers_equal_in_process(mixed_server):
    server, model = mixed_server
    frame = request_table()
    for name, (body, content_type) in bodies(frame).items():
        response = server.client.post(
            "/invocations",
            content=body,
            headers={"content-type": content_type, "accept": JSON_PROBA},
        )
        assert response.status_code == 200, (name, response.text)
        assert response.json()["predictions"] == expected_json(model, frame), name
    response = server.client.post(
        "/invocations", content=b"40,Paris,x,pro,1\n", headers={"content-type": "text/csv"}
    )
    assert response.status_code == 400
    assert response.text == "line 1, column 'income': 'x' is not a number\n"
    warnings = [line for line in server.log().splitlines() if "warm-up" in line and "fail" in line]
    assert not warnings, warnings


@pytest.mark.slow
def test_mixed_model_fuzz_never_answers_5xx(mixed_server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_serving_fuzz import ACCEPTS, BODIES, CONTENT_TYPES

    server, _ = mixed_server
    before = server.worker_pids()
    record = st.fixed_dictionaries(
        {
            name: st.one_of(st.none(), st.text(max_size=6), st.floats(), st.integers())
            for name in COLUMNS
        }
    )
    records_bodies = st.lists(record, max_size=5).map(lambda rs: json.dumps(rs).encode())

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(BODIES, records_bodies), content_type=CONTENT_TYPES, accept=ACCEPTS)
    def one_request(body, content_type, accept):
        headers = {
            k: v for k, v in (("content-type", content_type), ("accept", accept)) if v is not None
        }
        response = server.client.post("/invocations", content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text)
        if response.status_code >= 400:
            assert response.text.count("\n") == 1, response.text

    one_request()
    assert server.client.get("/ping").status_code == 200
    assert server.worker_pids() == before
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_mixed_model_under_concurrent_load(mixed_server):
    server, model = mixed_server
    plans = []
    for seed in range(8):
        frame = table(int(np.random.default_rng(seed).integers(1, 1500)), seed=100 + seed)
        shaped = bodies(frame)
        plans.append(
            [shaped[name] for name in ("csv", "json records", "json split", "jsonlines objects")]
        )
        plans[-1] = [(body, ctype, expected_json(model, frame)) for body, ctype in plans[-1]]
    failures: list[str] = []
    start = threading.Barrier(len(plans))

    def client(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            start.wait()
            for body, ctype, want in plans[index] * 3:
                response = http.post(
                    "/invocations",
                    content=body,
                    headers={"content-type": ctype, "accept": JSON_PROBA},
                )
                if response.status_code != 200 or response.json()["predictions"] != want:
                    failures.append(f"client {index}: {response.status_code} {response.text[:100]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
