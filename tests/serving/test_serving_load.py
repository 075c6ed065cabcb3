"""Load: many concurrent clients, many requests, zero errors, exact answers."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
from servingkit import FEATURES, csv_rows

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
