"""The SageMaker inference contract: routes, formats, settings, the `serve` command.

Every content type x Accept combination is checked in-process (fast) and over
real HTTP against `serve` subprocesses on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
from servingkit import (
    FEATURES,
    InProcessClient,
    csv_rows,
    running_serve,
    serve_env,
    serve_executable,
)

from serving import cli, runtime
from serving.app import create_app
from serving.inference import transform
from serving.settings import Settings

ROWS = np.random.default_rng(11).normal(size=(25, FEATURES))

BODIES = {
    "text/csv": csv_rows(ROWS),
    "text/csv; charset=utf-8": csv_rows(ROWS),
    "application/json": json.dumps({"instances": ROWS.tolist()}).encode(),
    "application/json; charset=UTF-8": json.dumps(ROWS.tolist()).encode(),  # bare list
    "application/jsonlines": "\n".join(json.dumps(r) for r in ROWS.tolist()).encode(),
}
ACCEPTS = [
    None,
    "*/*",
    "text/csv",
    "application/json",
    "application/jsonlines",
    "text/csv; predict_proba=true",
    "application/json; predict_proba=true",
    "application/jsonlines; predict_proba=true",
]


def expected_rows(model, proba: bool) -> list:
    labels = model.estimator.predict(ROWS).tolist()
    if not proba:
        return labels
    positive = model.estimator.predict_proba(ROWS)[:, 1].tolist()
    return [[label, p] for label, p in zip(labels, positive, strict=True)]


def parse_response(body: bytes, content_type: str) -> list:
    if content_type.startswith("text/csv"):
        rows = [line.split(",") for line in body.decode().split("\n")]
        return [int(r[0]) if len(r) == 1 else [int(r[0]), float(r[1])] for r in rows]
    if content_type.startswith("application/jsonlines"):
        return [json.loads(line) for line in body.decode().split("\n")]
    return json.loads(body)["predictions"]


def expected_type(content_type: str, accept: str | None) -> str:
    if accept is None or accept == "*/*":
        return content_type.split(";")[0]
    return accept.split(";")[0]


def check(response, model, content_type: str, accept: str | None) -> None:
    assert response.status_code == 200, response.text
    got_type = response.headers["content-type"]
    assert got_type.split(";")[0] == expected_type(content_type, accept)
    assert not response.content.endswith(b"\n")  # AssembleWith=Line adds it
    proba = bool(accept and "predict_proba=true" in accept)
    got = parse_response(response.content, got_type)
    want = expected_rows(model, proba)
    if proba:
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-12)
    else:
        assert got == want


@pytest.fixture(scope="module")
def inprocess(binary_model):
    settings = Settings.from_env({"SERVING_WORKERS": "2"})
    return InProcessClient(create_app(binary_model, settings))


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("content_type", list(BODIES))
def test_every_format_in_process(inprocess, binary_model, content_type, accept):
    headers = {"content-type": content_type}
    if accept is not None:
        headers["accept"] = accept
    response = inprocess.post("/invocations", content=BODIES[content_type], headers=headers)
    check(response, binary_model, content_type, accept)


def test_every_format_over_http(binary_server, binary_model):
    for content_type, body in BODIES.items():
        for accept in ACCEPTS:
            headers = {"content-type": content_type}
            if accept is not None:
                headers["accept"] = accept
            response = binary_server.client.post("/invocations", content=body, headers=headers)
            check(response, binary_model, content_type, accept)


def test_ping_and_execution_parameters(binary_server):
    ping = binary_server.client.get("/ping")
    assert ping.status_code == 200 and ping.content == b""
    params = binary_server.client.get("/execution-parameters")
    assert params.status_code == 200
    assert params.json() == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    assert len(binary_server.worker_pids()) == 2
    assert binary_server.client.get("/nope").status_code == 404
    assert binary_server.client.get("/invocations").status_code == 405


def test_unknown_headers_are_ignored(binary_server, binary_model):
    response = binary_server.client.post(
        "/invocations",
        content=BODIES["text/csv"],
        headers={
            "content-type": "text/csv",
            "X-Amzn-SageMaker-Target-Model": "whatever",
            "X-Something": "else",
        },
    )
    check(response, binary_model, "text/csv", None)


def test_configured_server(multiclass_dir, tmp_path):
    """Env settings: port, workers, payload, default probabilities, body limit."""
    with running_serve(
        multiclass_dir,
        tmp_path,
        SERVING_WORKERS="3",
        SERVING_MAX_PAYLOAD_MB="10",
        SERVING_PREDICT_PROBA="true",
        SERVING_MAX_BODY_MB="1",
    ) as server:
        assert len(server.worker_pids()) == 3
        assert server.client.get("/execution-parameters").json() == {
            "MaxConcurrentTransforms": 3,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": 10,
        }
        body = b"2,0,0,0\n-2,0,0,0\n0,0,0,0"
        # On by default: label plus one probability per class, labels CSV-quoted.
        lines = server.client.post(
            "/invocations", content=body, headers={"content-type": "text/csv"}
        )
        rows = lines.text.split("\n")
        assert [r.split(",")[0] for r in rows[:2]] == ["high", "low"]
        assert rows[2].startswith('"mid, ""ish""",') and rows[2].count(",") == 4
        # Off per request: Accept parameter, or SageMaker's custom attributes.
        off = server.client.post(
            "/invocations",
            content=body,
            headers={"content-type": "text/csv", "accept": "application/json;predict_proba=false"},
        )
        assert off.json() == {"predictions": ["high", "low", 'mid, "ish"']}
        off = server.client.post(
            "/invocations",
            content=body,
            headers={
                "content-type": "text/csv",
                "X-Amzn-SageMaker-Custom-Attributes": "predict_proba=false",
            },
        )
        assert off.text == 'high\nlow\n"mid, ""ish"""'
        # Over the 1 MiB limit: declared, and streamed without Content-Length.
        big = b"1,2,3,4\n" * (1024 * 1024 // 8 + 1)
        assert (
            server.client.post(
                "/invocations", content=big, headers={"content-type": "text/csv"}
            ).status_code
            == 413
        )

        def chunks():
            for _ in range(3):
                yield big[: 512 * 1024]

        small = server.client.post(  # chunked transfer encoding, no Content-Length
            "/invocations",
            content=iter([b"2,0,0,0\n", b"-2,0,", b"0,0"]),
            headers={"content-type": "text/csv", "accept": "text/csv;predict_proba=false"},
        )
        assert small.status_code == 200 and small.text == "high\nlow"
        streamed = server.client.post(
            "/invocations", content=chunks(), headers={"content-type": "text/csv"}
        )
        assert streamed.status_code == 413
        assert "SERVING_MAX_BODY_MB" in streamed.text
        assert server.client.get("/ping").status_code == 200


def test_default_limit_admits_100_mib(binary_server):
    row = b"0.123456789,-1.23456789,2.3456789,-0.00123456\n"
    body = row * (100 * 1024 * 1024 // len(row))
    response = binary_server.client.post(
        "/invocations", content=body, headers={"content-type": "text/csv"}, timeout=120
    )
    assert response.status_code == 200, response.text[:200]
    assert response.content.count(b"\n") + 1 == body.count(b"\n")
    over = b"1" * (111 * 1024 * 1024)
    response = binary_server.client.post(
        "/invocations", content=over, headers={"content-type": "text/csv"}, timeout=120
    )
    assert response.status_code == 413


# ----------------------------------------------------------------- start-up


def run_serve(model_dir, tmp_path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [serve_executable(), *args],
        env=serve_env(model_dir, 1, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_exits_when_model_is_missing(tmp_path):
    result = run_serve(tmp_path, tmp_path, "serve")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(tmp_path / "model.joblib") in lines[0] and "not found" in lines[0]


def test_serve_exits_when_model_is_unreadable(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"\x80\x04garbage")
    result = run_serve(tmp_path, tmp_path)
    assert result.returncode != 0
    assert str(tmp_path / "model.joblib") in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_rejects_bad_settings(tmp_path):
    result = run_serve(tmp_path, tmp_path, SERVING_WORKERS="many")
    assert result.returncode == 2
    assert result.stderr.strip() == "serve: error: SERVING_WORKERS='many' is not an integer"
    result = run_serve(tmp_path, tmp_path, "train")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_serve_refuses_probabilities_the_model_cannot_give(regressor_dir, monkeypatch, capsys):
    for variable in runtime._THREAD_VARIABLES:
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("SERVING_PREDICT_PROBA", "true")
    code = cli.main(["--model-dir", str(regressor_dir), "--host", "127.0.0.1", "--port", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "SERVING_PREDICT_PROBA" in err and "predict_proba" in err


def test_python_dash_m_serving_help():
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "SAGEMAKER_BIND_TO_PORT" in result.stdout


def test_transform_floor_signature(binary_model):
    body, content_type = transform(binary_model, BODIES["text/csv"], "text/csv", None)
    assert content_type == "text/csv"
    assert body == "\n".join(map(str, expected_rows(binary_model, False))).encode()


def test_binds_only_the_configured_host(binary_server):
    # SERVING_HOST=127.0.0.1: another loopback address must not reach it.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.2:{binary_server.port}/ping", timeout=2)
