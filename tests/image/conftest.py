"""Fixtures for the slow image test: engine, Debian base, serving image, model, containers.

Session-scoped so the (minutes-long) build happens once per run; every container
goes through `containers`, whose finalizer removes it also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .engine import (
    REPO_ROOT,
    SERVING_IMAGE,
    SETUP_SCRIPT,
    DebianBase,
    Engine,
    EngineUnavailableError,
    RunSpec,
    build_image,
    ensure_debian_base,
    find_engine,
    start_container,
)
from .support import (
    TIMINGS,
    Container,
    MixedModel,
    StartContainer,
    TrainedModel,
    UserCodeModel,
    wait_ready,
)

FEATURES = 8
CLASS_LABELS = ["high", "low", "mid"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Under CI a missing engine is a failure; elsewhere a skip that says why."""
    if _in_ci():
        pytest.fail(f"image test cannot run: {reason}", pytrace=False)
    pytest.skip(f"image test needs a container engine: {reason}")


def _run_setup_script() -> str:
    """Install podman & co. (CI as root only); returns the error text, '' on success."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / SETUP_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return "" if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-500:]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("serving image timings")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value}")


def _find_engine() -> tuple[Engine | None, str]:
    try:
        return find_engine(), ""
    except EngineUnavailableError as exc:
        return None, str(exc)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """A working engine; under CI (as root) the setup script installs podman first."""
    found, reason = _find_engine()
    if found is None and _in_ci() and os.geteuid() == 0:
        error = _run_setup_script()
        found, reason = _find_engine() if not error else (None, f"{SETUP_SCRIPT} failed: {error}")
    if found is None:
        _unavailable(reason)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def build_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-build-logs")


@pytest.fixture(scope="session")
def base_image(engine: Engine, build_logs: Path) -> str:
    """The BASE_IMAGE build arg: IMAGE_TEST_BASE_IMAGE if set, else the cached Debian base.

    With a registry reachable, IMAGE_TEST_BASE_IMAGE=python:3.11-slim-bookworm tests
    the Dockerfile's own default base instead.
    """
    explicit = os.environ.get("IMAGE_TEST_BASE_IMAGE", "").strip()
    if explicit:
        TIMINGS["base image"] = f"{explicit} (from IMAGE_TEST_BASE_IMAGE)"
        return explicit
    base = DebianBase()
    if shutil.which("debootstrap") is None and _in_ci() and os.geteuid() == 0:
        _run_setup_script()
    try:
        seconds = ensure_debian_base(engine, base, build_logs / "debootstrap.log")
    except EngineUnavailableError as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:
        _unavailable(reason)
    TIMINGS["base image"] = (
        f"{base.tag} reused from cache (key {base.key})"
        if seconds is None
        else f"{base.tag} built by debootstrap in {seconds:.1f} s (key {base.key})"
    )
    return base.tag


@pytest.fixture(scope="session")
def serving_image(engine: Engine, base_image: str, build_logs: Path) -> str:
    """container/Dockerfile built on `base_image`; unchanged layers come from the cache.

    IMAGE_TEST_CONTEXT=DIR builds DIR/Dockerfile instead (to try a variant);
    IMAGE_TEST_REBUILD=1 builds even when the image's build key says nothing changed.
    """
    context = Path(os.environ.get("IMAGE_TEST_CONTEXT") or REPO_ROOT / "container")
    dockerfile = context / "Dockerfile"
    if not dockerfile.exists():
        pytest.fail(f"{dockerfile} does not exist", pytrace=False)
    seconds = build_image(
        engine,
        context=context,
        dockerfile=dockerfile,
        tag=SERVING_IMAGE,
        build_args={"BASE_IMAGE": base_image},
        log=build_logs / "build.log",
        reuse=os.environ.get("IMAGE_TEST_REBUILD", "") not in {"1", "true"},
    )
    TIMINGS["image build"] = (
        f"{SERVING_IMAGE} reused: same Dockerfile, context and base (IMAGE_TEST_REBUILD=1 forces)"
        if seconds is None
        else f"{SERVING_IMAGE} built in {seconds:.1f} s with {engine.name}"
    )
    return SERVING_IMAGE


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Fit a small Pipeline and unpack its model.tar.gz the way SageMaker does."""
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from model.artifact import unpack_model_archive, write_model_archive

    x, y_index = make_classification(
        n_samples=600, n_features=FEATURES, n_informative=5, n_classes=3, random_state=7
    )
    y = np.array(CLASS_LABELS, dtype=object)[y_index]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(x, y)
    metadata = {
        "feature_count": FEATURES,
        "class_labels": sorted(CLASS_LABELS),
        "feature_names": None,
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "metrics": {"train_accuracy": float(pipeline.score(x, y))},
        "created_by": "tests/image",
    }
    root = tmp_path_factory.mktemp("image-model")
    archive = write_model_archive(pipeline, metadata, root / "model.tar.gz")
    model_dir = root / "model"
    unpack_model_archive(archive, model_dir)
    readable_by_all(model_dir)
    # Rows with many decimals, so a float-parsing or formatting difference would show.
    test_x = np.random.default_rng(11).normal(size=(250, FEATURES)) * 3.0
    return TrainedModel(archive, model_dir, test_x, [str(v) for v in pipeline.predict(test_x)])


def readable_by_all(directory: Path) -> None:
    """The image may run as a non-root user: the mounted directory must be readable."""
    directory.chmod(0o755)
    for item in directory.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)


@pytest.fixture(scope="session")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> MixedModel:
    """The issue's most common real model: one-hot + scaling over a mixed-type DataFrame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from model.artifact import unpack_model_archive, write_model_archive

    rng = np.random.default_rng(5)
    rows = 400
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "city": rng.choice(["Paris", "Lyon", "Nice", "Saint-Étienne"], rows),
            "plan": rng.choice(["basic", "pro"], rows),
            "income": rng.normal(50_000, 9_000, rows).round(2),
        }
    )
    target = ((frame["age"] > 40) ^ (frame["city"] == "Lyon")).astype(int)
    columns = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ("numeric", StandardScaler(), ["age", "income"]),
        ]
    )
    pipeline = make_pipeline(columns, LogisticRegression()).fit(frame, target)
    root = tmp_path_factory.mktemp("image-mixed-model")
    archive = write_model_archive(pipeline, {"created_by": "tests/image"}, root / "model.tar.gz")
    model_dir = unpack_model_archive(archive, root / "model")
    readable_by_all(model_dir)
    test = frame.sample(60, random_state=3)
    body = test.to_csv(header=False, index=False).encode()
    return MixedModel(model_dir, body, [str(v) for v in pipeline.predict(test)])


USER_INFERENCE_PY = """
import io
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type):
    if content_type != "text/csv":
        raise ValueError(f"only text/csv, not {content_type}")
    return np.loadtxt(io.StringIO(input_data), delimiter=",", ndmin=2)


def predict_fn(input_data, model):
    if np.isnan(input_data).any():
        raise RuntimeError("NaN reached predict_fn")
    return model.predict_proba(input_data)


def output_fn(prediction, accept):
    return json.dumps({"probabilities": prediction.tolist()}), "application/json"
"""


@pytest.fixture(scope="session")
def user_code_model(
    tmp_path_factory: pytest.TempPathFactory, trained_model: TrainedModel
) -> UserCodeModel:
    """`trained_model`'s estimator repacked with code/inference.py (model.artifact.pack_model)."""
    import joblib

    from model.artifact import pack_model, unpack_model_archive

    root = tmp_path_factory.mktemp("image-user-code")
    code = root / "code"
    code.mkdir()
    (code / "inference.py").write_text(USER_INFERENCE_PY)
    (code / "requirements.txt").write_text("scikit-learn>=1.5\nnumpy\n")  # met by the image
    archive = pack_model(
        trained_model.model_dir / "model.joblib", root / "model.tar.gz", code_dir=code
    )
    model_dir = unpack_model_archive(archive, root / "model")
    readable_by_all(model_dir)
    estimator = joblib.load(model_dir / "model.joblib")
    return UserCodeModel(model_dir, estimator.predict_proba(trained_model.x).tolist())


@pytest.fixture(scope="session")
def containers(
    engine: Engine, serving_image: str, trained_model: TrainedModel
) -> Iterator[StartContainer]:
    """Start serving containers like SageMaker does; every one is removed at the end."""
    engine.remove_stale_containers()
    started: list[str] = []

    def start(
        purpose: str,
        *,
        env: Mapping[str, str] | None = None,
        container_port: int = 8080,
        network: bool = True,
        model_dir: Path | None = None,
    ) -> Container:
        name = f"sbt-image-{purpose}-{uuid.uuid4().hex[:8]}"
        started.append(name)
        start_container(
            engine,
            RunSpec(
                image=serving_image,
                name=name,
                env=dict(env or {}),
                ro_mounts=[(model_dir or trained_model.model_dir, "/opt/ml/model")],
                publish=container_port if network else None,
            ),
        )
        port = None
        if network:
            address, port = engine.published_port(name, container_port)
            assert address == "127.0.0.1", f"port published on {address}, not loopback only"
        container = Container(name, port, container_port)
        seconds = wait_ready(engine, container)
        TIMINGS.setdefault(f"run to first /ping 200 ({purpose})", f"{seconds:.1f} s")
        return container

    try:
        yield start
    finally:
        removing = time.monotonic()
        for name in started:
            engine.remove_container(name)
        TIMINGS["removing the containers"] = f"{time.monotonic() - removing:.1f} s"


@pytest.fixture
def one_off_containers(engine: Engine, containers: StartContainer) -> Iterator[StartContainer]:
    """Like `containers`, but removed as soon as the test ends (vfs copies cost disk)."""
    mine: list[str] = []

    def start(purpose: str, **options: object) -> Container:
        container = containers(purpose, **options)
        mine.append(container.name)
        return container

    yield start
    for name in mine:
        engine.remove_container(name)
