"""Models and payloads the serving benchmarks share (numeric and mixed-column CSV)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

MIB = 1024 * 1024


def make_model(directory: Path, features: int) -> None:
    """A StandardScaler + LogisticRegression pipeline, like a typical tabular model."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, features))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    (directory / "metadata.json").write_text(
        json.dumps({"feature_count": features, "class_labels": [0, 1], "created_by": "bench"})
    )


def make_payloads(count: int, size: int, features: int) -> list[bytes]:
    """CSV payloads of at most `size` bytes, whole lines, floats as pandas writes them."""
    rng = np.random.default_rng(1)
    payloads = []
    for _ in range(count):
        lines: list[bytes] = []
        total = 0
        while True:
            block = rng.normal(size=(2000, features))
            for row in block.tolist():
                line = (",".join(map(repr, row)) + "\n").encode()
                if total + len(line) > size:
                    break
                lines.append(line)
                total += len(line)
            else:
                continue
            break
        payloads.append(b"".join(lines))
    return payloads


MIXED_NUMBERS = [f"n{i}" for i in range(10)]
MIXED_TEXTS = [f"c{i}" for i in range(5)]


def mixed_frame(rows: int, seed: int):
    """10 numeric + 5 categorical columns (8 levels each), ~2% of cells missing."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 10)), columns=MIXED_NUMBERS)
    for index, name in enumerate(MIXED_TEXTS):
        frame[name] = rng.choice([f"{name}_level{k}" for k in range(8)], rows)
        frame.loc[rng.random(rows) < 0.02, name] = None
        frame.loc[rng.random(rows) < 0.02, MIXED_NUMBERS[index]] = np.nan
    return frame


def make_mixed_model(directory: Path) -> None:
    """A DataFrame pipeline: one-hot on strings, scaling on numbers, with imputers, as users fit."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = mixed_frame(5000, seed=0)
    y = (frame["n0"].fillna(0) + (frame["c0"] == "c0_level1") > 0.3).astype(int)
    encode = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    scale = make_pipeline(SimpleImputer(), StandardScaler())
    transformer = ColumnTransformer(
        [("text", encode, MIXED_TEXTS), ("numbers", scale, MIXED_NUMBERS)]
    )
    model = make_pipeline(transformer, LogisticRegression()).fit(frame, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")  # no metadata: a user's own model


def make_mixed_payloads(count: int, size: int) -> list[bytes]:
    """Headerless CSV of `mixed_frame` rows, at most `size` bytes each, whole lines."""
    payloads = []
    for seed in range(count):
        text = mixed_frame(size // 150, seed=1 + seed).to_csv(header=False, index=False).encode()
        payloads.append(text[: text.rindex(b"\n", 0, size) + 1])
    return payloads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_fixture(
    kind: str, directory: Path, count: int, size: int, features: int
) -> tuple[list[bytes], str]:
    """Model in `directory` and its payloads: `numeric` (array model) or `mixed` (DataFrame)."""
    if kind == "mixed":  # the DataFrame path: floor and HTTP both decode into a DataFrame
        make_mixed_model(directory)
        return make_mixed_payloads(count, size), "10 numeric + 5 categorical columns"
    if kind != "numeric":
        raise SystemExit(f"--models: unknown model {kind!r}; use numeric and/or mixed")
    make_model(directory, features)
    return make_payloads(count, size, features), f"{features} features"
