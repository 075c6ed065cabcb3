"""Build container/Dockerfile and run the image the way SageMaker Batch Transform does.

Slow (minutes: a Debian base from debootstrap on the first run, then the image
build); run with `uv run pytest -m slow`. Needs a Docker daemon or podman: see
tests/image/setup_podman.sh. What SageMaker does that is reproduced here:
`run IMAGE serve`, the model unpacked read-only at /opt/ml/model, nothing
writable but /tmp, SAGEMAKER_BIND_TO_PORT, SIGTERM then SIGKILL 30 s later
(../shared/notes/sagemaker-contract.md).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from .engine import Engine
from .support import (
    BODIES,
    CSV,
    JSON,
    JSONLINES,
    TIMINGS,
    Container,
    MixedModel,
    StartContainer,
    TrainedModel,
    UserCodeModel,
    csv_body,
    inside_request,
)

if TYPE_CHECKING:
    from serving.model_loading import LoadedModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SAGEMAKER_STOP_GRACE_S = 30  # SIGKILL follows SIGTERM after 30 s


@pytest.fixture(scope="module")
def served(containers: StartContainer) -> Container:
    """The main container: default settings, everything SageMaker-like."""
    # SageMaker sets SAGEMAKER_BATCH=true for Batch Transform containers.
    return containers("main", env={"SAGEMAKER_BATCH": "true"})


@pytest.fixture(scope="module")
def in_process(trained_model: TrainedModel) -> LoadedModel:
    """The model as `serve` loads it, for the in-process reference answers."""
    from serving.model_loading import load_model

    return load_model(trained_model.model_dir)


# --- the image itself ----------------------------------------------------------


def test_image_is_built_for_sagemaker(
    engine: Engine, serving_image: str, served: Container
) -> None:
    """linux/amd64, accept-bind-to-port label, exec-form entrypoint, no compilers left."""
    info = engine.image_inspect(serving_image)
    assert info is not None
    assert (info.get("Os"), info.get("Architecture")) == ("linux", "amd64")
    config = info.get("Config") or {}
    labels = config.get("Labels") or {}
    assert labels.get("com.amazonaws.sagemaker.capabilities.accept-bind-to-port") == "true"
    entrypoint = config.get("Entrypoint") or []
    assert entrypoint, "the image needs an ENTRYPOINT so `run IMAGE serve` starts the server"
    assert entrypoint[:2] != ["/bin/sh", "-c"], "shell-form ENTRYPOINT would swallow SIGTERM"
    # Looked for inside the running container (on vfs every extra container costs
    # a full copy of the image).
    probe = engine.cmd(
        "exec",
        served.name,
        "/bin/sh",
        "-c",
        "for c in gcc cc g++ make; do command -v $c; done;"
        " ls -d /root/.cache/pip 2>/dev/null; true",
    )
    assert probe.stdout.strip() == "", f"compilers or pip cache left in the image: {probe.stdout}"


# --- the contract over the published port ----------------------------------------


def test_ping_and_execution_parameters(served: Container) -> None:
    from serving.settings import available_cpus

    ping = httpx.get(f"{served.url}/ping", timeout=5)
    assert ping.status_code == 200
    assert ping.content == b""
    params = httpx.get(f"{served.url}/execution-parameters", timeout=5)
    assert params.status_code == 200
    assert params.json() == {
        "MaxConcurrentTransforms": available_cpus(),  # no CPU limit: the container sees ours
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


@pytest.mark.parametrize(
    ("content_type", "accept"),
    [
        (CSV, None),
        (JSON, None),
        (JSONLINES, None),
        ("text/csv; charset=utf-8", "*/*"),
        (CSV, JSON),
        (JSON, CSV),
        (JSONLINES, JSON),
        (CSV, f"{CSV}; predict_proba=true"),
        (JSON, f"{JSONLINES}; predict_proba=true"),
    ],
)
def test_invocations_match_in_process(
    served: Container,
    trained_model: TrainedModel,
    in_process: LoadedModel,
    content_type: str,
    accept: str | None,
) -> None:
    """Every format answers byte for byte what the in-process code answers."""
    from serving.inference import transform

    body = BODIES[content_type.split(";")[0]](trained_model.x)
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    response = httpx.post(f"{served.url}/invocations", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    expected_body, expected_type = transform(in_process, body, content_type, accept)
    assert response.headers["content-type"].split(";")[0] == expected_type.split(";")[0]
    assert response.content == expected_body
    if content_type == CSV and accept is None:
        # Independent of the serving package: one predicted label per line, in order.
        assert response.text.splitlines() == trained_model.labels


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", CSV, 400),
        (b"1,2,3\n", CSV, 400),  # wrong number of features
        (b"1,2,x,4,5,6,7,8\n", CSV, 400),
        (b'{"instances": [[1, 2', JSON, 400),
        (b"1,2,3,4,5,6,7,8\n", "text/plain", 415),
    ],
)
def test_bad_request_is_4xx_and_server_keeps_serving(
    served: Container, body: bytes, content_type: str, status: int
) -> None:
    response = httpx.post(
        f"{served.url}/invocations", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.text.strip() and "\n" not in response.text.strip()
    assert httpx.get(f"{served.url}/ping", timeout=5).status_code == 200


def test_root_filesystem_and_model_are_read_only(engine: Engine, served: Container) -> None:
    """The server runs with only /tmp writable and the model mount read-only."""
    state = engine.cmd("container", "inspect", served.name)
    host_config = json.loads(state.stdout)[0]["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    probe = engine.cmd(
        "exec",
        served.name,
        "/bin/sh",
        "-c",
        "for d in /opt/ml/model / /opt /root /var/tmp /tmp; do"
        " if touch $d/.w 2>/dev/null; then echo $d; rm -f $d/.w; fi; done",
    )
    assert probe.stdout.split() == ["/tmp"], "only /tmp may be writable"
    log = engine.logs(served.name)
    for symptom in ("Read-only file system", "Permission denied", "Traceback"):
        assert symptom not in log, f"{symptom!r} in the container log:\n{log[-2000:]}"


# --- start-up without a network -------------------------------------------------


def test_starts_and_predicts_without_any_network(
    engine: Engine, one_off_containers: StartContainer, trained_model: TrainedModel
) -> None:
    """--network=none: only loopback inside, yet it becomes ready and predicts.

    Published ports need a network, so this container is probed from inside over
    its own loopback; the main container uses the default network only to be
    reachable from the host.
    """
    isolated = one_off_containers("nonet", network=False)
    interfaces = engine.cmd(
        "exec",
        isolated.name,
        "python3",
        "-c",
        "import socket; print(' '.join(n for _, n in socket.if_nameindex()))",
    )
    assert interfaces.stdout.split() == ["lo"]
    status, answer = inside_request(
        engine, isolated.name, "/invocations", body=csv_body(trained_model.x), content_type=CSV
    )
    assert status == 200, answer
    assert answer.decode().splitlines() == trained_model.labels


# --- the models people really have (issue 11), without a network -------------------


def test_mixed_type_dataframe_model(
    engine: Engine, one_off_containers: StartContainer, mixed_model: MixedModel
) -> None:
    """A one-hot + scaling pipeline fitted on a DataFrame with string columns, no code."""
    container = one_off_containers("mixed", network=False, model_dir=mixed_model.model_dir)
    status, answer = inside_request(
        engine, container.name, "/invocations", body=mixed_model.body, content_type=CSV
    )
    assert status == 200, answer
    assert answer.decode().splitlines() == mixed_model.labels


def test_user_inference_code_in_the_archive(
    engine: Engine,
    one_off_containers: StartContainer,
    user_code_model: UserCodeModel,
    trained_model: TrainedModel,
) -> None:
    """code/inference.py from model.tar.gz runs read-only: its answers, its errors, the log."""
    container = one_off_containers("usercode", network=False, model_dir=user_code_model.model_dir)
    status, answer = inside_request(
        engine, container.name, "/invocations", body=csv_body(trained_model.x), content_type=CSV
    )
    assert status == 200, answer
    got = json.loads(answer)["probabilities"]
    np.testing.assert_allclose(got, user_code_model.probabilities, rtol=1e-9, atol=1e-12)

    code = b"/opt/ml/model/code/inference.py"
    status, answer = inside_request(
        engine, container.name, "/invocations", body=b"[1, 2]", content_type=JSON
    )
    assert status == 400, answer
    assert answer.startswith(b"input_fn of " + code + b" rejected the request: ValueError")
    nan_row = b",".join([b"nan"] * trained_model.x.shape[1]) + b"\n"
    status, answer = inside_request(
        engine, container.name, "/invocations", body=nan_row, content_type=CSV
    )
    assert status == 500, answer
    assert answer == (
        b"model error in predict_fn of "
        + code
        + b" (1 rows): RuntimeError: NaN reached predict_fn\n"
    )
    status, _ = inside_request(
        engine, container.name, "/invocations", body=csv_body(trained_model.x), content_type=CSV
    )
    assert status == 200, "the server keeps serving after the errors"
    log = engine.logs(container.name)
    assert (
        "user code /opt/ml/model/code/inference.py: model_fn, input_fn, predict_fn, output_fn"
        in log
    )
    assert "requirement(s) already installed" in log
    assert "Traceback" in log and "NaN reached predict_fn" in log, "the traceback goes to the log"
    for symptom in ("Read-only file system", "Permission denied"):
        assert symptom not in log, f"{symptom!r} in the container log:\n{log[-2000:]}"


# --- SAGEMAKER_BIND_TO_PORT ------------------------------------------------------


def test_sagemaker_bind_to_port_is_honoured(
    engine: Engine, one_off_containers: StartContainer, trained_model: TrainedModel
) -> None:
    custom = one_off_containers(
        "port", env={"SAGEMAKER_BIND_TO_PORT": "9090", "SERVING_WORKERS": "1"}, container_port=9090
    )
    assert httpx.get(f"{custom.url}/ping", timeout=5).status_code == 200
    params = httpx.get(f"{custom.url}/execution-parameters", timeout=5).json()
    assert params["MaxConcurrentTransforms"] == 1
    response = httpx.post(
        f"{custom.url}/invocations",
        content=csv_body(trained_model.x[:5]),
        headers={"Content-Type": CSV},
    )
    assert response.text.splitlines() == trained_model.labels[:5]
    status, _ = inside_request(engine, custom.name, "/ping", port=8080)
    assert status == 0, "something still listens on 8080 inside the container"


# --- SIGTERM ----------------------------------------------------------------------


def test_stop_finishes_in_flight_request_and_exits_zero(
    engine: Engine, one_off_containers: StartContainer, trained_model: TrainedModel
) -> None:
    """`stop` sends SIGTERM: the request in flight completes, exit 0, well within 30 s."""
    container = one_off_containers("stop")
    rows = len(trained_model.x) * 2000  # 500,000 rows, ~37 MB: takes seconds to answer
    body = csv_body(trained_model.x) * 2000
    answer: dict[str, object] = {}

    def post() -> None:
        try:
            answer["response"] = httpx.post(
                f"{container.url}/invocations",
                content=body,
                headers={"Content-Type": CSV},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            answer["response"] = exc
        answer["finished"] = time.monotonic()

    sender = threading.Thread(target=post)
    sender.start()
    time.sleep(0.5)  # the request is on the wire
    started = time.monotonic()
    engine.cmd("stop", "-t", str(SAGEMAKER_STOP_GRACE_S), container.name, timeout=90)
    stopped_in = time.monotonic() - started
    sender.join(60)
    state = engine.container_state(container.name)
    TIMINGS["stop (SIGTERM) to exit"] = (
        f"{stopped_in:.1f} s with a {len(body) / 1e6:.0f} MB request in flight, "
        f"exit code {state.get('ExitCode')}"
    )
    assert stopped_in < SAGEMAKER_STOP_GRACE_S
    assert state.get("ExitCode") == 0, engine.logs(container.name)[-2000:]
    response = answer.get("response")
    assert isinstance(response, httpx.Response), f"in-flight request failed: {response!r}"
    assert response.status_code == 200, response.text[:300]
    assert len(response.content.splitlines()) == rows
    finished = answer["finished"]
    assert isinstance(finished, float)
    assert finished > started, "the request was answered before SIGTERM: make it bigger"


# --- the local transform runner ---------------------------------------------------


JOB = {"MaxPayloadInMB": 1}  # 1 MiB mini-batches: several requests per file


def _container_transform(server: Container, input_dir: Path, output_dir: Path) -> None:
    """The runner of the local job, pointed at the container instead of its own `serve`.

    `run_local_transform` always starts `serve` itself, so this does its steps
    after that one: read /execution-parameters, resolve the job, run the runner.
    """
    from model.batch.params import TransformJobParameters, resolve
    from model.batch.runner import discover_inputs, prepare_output_dir, run_batch_transform

    files = discover_inputs(input_dir, output_dir)
    prepare_output_dir(output_dir)
    offered = httpx.get(f"{server.url}/execution-parameters", timeout=5).json()
    parameters = resolve(TransformJobParameters(**JOB), offered)
    assert server.port is not None
    result = run_batch_transform("127.0.0.1", server.port, files, output_dir, parameters)
    assert result.status == "Completed", result.failure_reason


def _host_transform(archive: Path, input_dir: Path, output_dir: Path) -> None:
    """The local job exactly as `scripts/local_transform.py` runs it: `serve` on this host."""
    from model.batch.local import run_local_transform
    from model.batch.params import TransformJobParameters

    result = run_local_transform(archive, input_dir, output_dir, TransformJobParameters(**JOB))
    assert result.transform.status == "Completed", result.transform.failure_reason


def _outputs(output_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(output_dir).as_posix(): p.read_bytes()
        for p in sorted(output_dir.rglob("*.out"))
    }


def test_local_transform_against_container_matches_host(
    served: Container, trained_model: TrainedModel, tmp_path: Path
) -> None:
    """Same runner, same input: the container's .out files equal the host `serve`'s."""
    inputs = tmp_path / "input"
    (inputs / "nested").mkdir(parents=True)
    (inputs / "part-0.csv").write_bytes(csv_body(trained_model.x) * 60)  # ~15,000 rows
    (inputs / "nested" / "part-1.csv").write_bytes(csv_body(trained_model.x[:37]))
    _container_transform(served, inputs, tmp_path / "out-container")
    _host_transform(trained_model.archive, inputs, tmp_path / "out-host")
    from_container = _outputs(tmp_path / "out-container")
    from_host = _outputs(tmp_path / "out-host")
    assert sorted(from_container) == ["nested/part-1.csv.out", "part-0.csv.out"]
    assert from_container == from_host
    assert from_container["part-0.csv.out"].decode().splitlines() == trained_model.labels * 60
