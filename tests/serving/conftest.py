"""Fixtures for the serving tests: small fitted models on disk and `serve` subprocesses.

Models are fitted here (not taken from the `model` package) so these tests only
depend on the serving contract: model.joblib + metadata.json in a directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from servingkit import (
    FEATURES,
    ServeProcess,
    running_serve,
    short_limits_env,
    training_data,
    write_model,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serving.model_loading import LoadedModel, load_model


@pytest.fixture(scope="session")
def binary_dir(tmp_path_factory) -> Path:
    """StandardScaler + LogisticRegression, labels 0/1, 4 features, with metadata."""
    x, _ = training_data()
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    meta = {
        "feature_count": FEATURES,
        "class_labels": [0, 1],
        "feature_names": None,
        "versions": {},
        "metrics": {},
        "created_by": "tests/serving",
    }
    return write_model(tmp_path_factory.mktemp("binary"), model, meta)


@pytest.fixture(scope="session")
def multiclass_dir(tmp_path_factory) -> Path:
    """String labels (one holds a comma), fitted on a DataFrame, no metadata file."""
    x, _ = training_data(seed=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    y = np.where(x[:, 0] > 0.5, "high", np.where(x[:, 0] < -0.5, "low", 'mid, "ish"'))
    model = LogisticRegression().fit(frame, y)
    return write_model(tmp_path_factory.mktemp("multiclass"), model, None)


@pytest.fixture(scope="session")
def regressor_dir(tmp_path_factory) -> Path:
    x, _ = training_data(seed=2)
    model = LinearRegression().fit(x, x @ np.arange(1.0, FEATURES + 1))
    return write_model(tmp_path_factory.mktemp("regressor"), model, {"feature_count": FEATURES})


@pytest.fixture(scope="session")
def nan_dir(tmp_path_factory) -> Path:
    """HistGradientBoosting takes NaN natively."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, rng = training_data(seed=3)
    y = (x[:, 0] > 0).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    model = HistGradientBoostingClassifier(max_iter=10).fit(x, y)
    return write_model(tmp_path_factory.mktemp("nan"), model, {"feature_count": FEATURES})


@pytest.fixture(scope="session")
def binary_model(binary_dir) -> LoadedModel:
    return load_model(binary_dir)


@pytest.fixture(scope="session")
def multiclass_model(multiclass_dir) -> LoadedModel:
    return load_model(multiclass_dir)


@pytest.fixture(scope="session")
def regressor_model(regressor_dir) -> LoadedModel:
    return load_model(regressor_dir)


@pytest.fixture(scope="session")
def nan_model(nan_dir) -> LoadedModel:
    return load_model(nan_dir)


@pytest.fixture(scope="session")
def binary_server(binary_dir, tmp_path_factory) -> Iterator[ServeProcess]:
    """`serve serve` (as SageMaker runs it) with 2 workers and default limits."""
    with running_serve(binary_dir, tmp_path_factory.mktemp("logs"), "serve") as server:
        yield server


@pytest.fixture(scope="session")
def pid_server(tmp_path_factory) -> Iterator[ServeProcess]:
    """2 workers whose model answers with the worker's pid; 2 s head/body timeouts, 16 KiB heads."""
    from serving_faulty_estimator import FaultyRegressor

    model_dir = tmp_path_factory.mktemp("faulty")
    write_model(model_dir, FaultyRegressor(), {"feature_count": 2})
    logs = tmp_path_factory.mktemp("logs")
    with running_serve(model_dir, logs, "serve", **short_limits_env()) as server:
        yield server
