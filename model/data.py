"""A reproducible classification data set, split three ways, and the transform input on disk.

``generate_dataset`` draws rows with scikit-learn's ``make_classification`` (the
seed fixes every number) and splits them into training, evaluation and transform
input. ``write_transform_input`` writes the transform part as several headerless
CSV files (several, so MaxConcurrentTransforms and the per-file semantics matter)
and, next to them, the held-out labels plus a manifest, which is all the scoring
step needs, locally or after a cloud run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from model.errors import UserError

MANIFEST_FILE = "manifest.json"
FLOAT_FORMAT = "%.6g"


class DataError(UserError):
    """Data-generation settings that cannot produce a usable data set."""


@dataclass(frozen=True)
class Dataset:
    """Features and labels of the three splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    x_transform: np.ndarray
    y_transform: np.ndarray

    @property
    def feature_count(self) -> int:
        """Columns per row."""
        return int(self.x_train.shape[1])


def generate_dataset(
    *,
    rows: int,
    features: int,
    class_balance: tuple[float, ...] = (0.5, 0.5),
    seed: int = 0,
    eval_fraction: float = 0.2,
    transform_fraction: float = 0.2,
) -> Dataset:
    """Draw ``rows`` rows and split them (shuffled, stratified by construction of the seed)."""
    if features < 2:
        raise DataError(f"--features must be at least 2, got {features}")
    if not 0 < eval_fraction < 1 or not 0 < transform_fraction < 1:
        raise DataError("the evaluation and transform fractions must be between 0 and 1")
    train_fraction = 1 - eval_fraction - transform_fraction
    if train_fraction <= 0:
        raise DataError("the evaluation and transform fractions leave no rows for training")
    classes = len(class_balance)
    minimum = 10 * classes / min(train_fraction, eval_fraction, transform_fraction)
    if rows < minimum:
        raise DataError(f"--rows must be at least {int(np.ceil(minimum))} for these splits")
    informative = max(2, min(features, features // 2))
    x, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=informative,
        n_redundant=min(2, features - informative),
        n_classes=classes,
        n_clusters_per_class=1,
        weights=list(class_balance[:-1]),
        flip_y=0.02,
        class_sep=1.0,
        random_state=seed,
    )
    order = np.random.default_rng(seed).permutation(rows)
    x, y = x[order], y[order]
    n_eval = round(rows * eval_fraction)
    n_transform = round(rows * transform_fraction)
    n_train = rows - n_eval - n_transform
    return Dataset(
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_eval=x[n_train : n_train + n_eval],
        y_eval=y[n_train : n_train + n_eval],
        x_transform=x[n_train + n_eval :],
        y_transform=y[n_train + n_eval :],
    )


@dataclass(frozen=True)
class TransformInputSet:
    """Where the transform input, its labels and the manifest were written."""

    input_dir: Path
    labels_dir: Path
    manifest: Path
    files: tuple[str, ...]
    rows: int


def write_csv(x: np.ndarray, path: Path) -> None:
    """Headerless CSV, one row per line, ``%.6g`` numbers (what the model server reads)."""
    frame = pd.DataFrame(x)
    frame.to_csv(path, header=False, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def write_transform_input(
    x: np.ndarray, y: np.ndarray, directory: Path, *, files: int
) -> TransformInputSet:
    """Write ``x`` as ``files`` CSV files under ``directory/input`` and ``y`` as labels.

    Layout: ``input/part-0000.csv`` ...; ``labels/part-0000.csv`` (one label per
    line, same order); ``manifest.json`` naming each file with its row count.
    """
    if files < 1:
        raise DataError(f"--files must be at least 1, got {files}")
    if files > len(x):
        raise DataError(f"--files {files} is more than the {len(x)} transform rows")
    input_dir = directory / "input"
    labels_dir = directory / "labels"
    input_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (part_x, part_y) in enumerate(
        zip(np.array_split(x, files), np.array_split(y, files), strict=True)
    ):
        name = f"part-{index:04d}.csv"
        write_csv(part_x, input_dir / name)
        (labels_dir / name).write_text("".join(f"{label}\n" for label in part_y.tolist()))
        entries.append({"input": name, "labels": name, "rows": len(part_x)})
    manifest = directory / MANIFEST_FILE
    manifest.write_text(
        json.dumps(
            {"input_dir": "input", "labels_dir": "labels", "files": entries},
            indent=2,
        )
        + "\n"
    )
    return TransformInputSet(
        input_dir=input_dir,
        labels_dir=labels_dir,
        manifest=manifest,
        files=tuple(e["input"] for e in entries),
        rows=len(x),
    )
