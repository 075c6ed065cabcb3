"""A reproducible classification data set, split three ways, and the transform input on disk.

``generate_dataset`` draws rows with scikit-learn's ``make_classification`` (the
seed fixes every number) and splits them into training, evaluation and transform
input; ``model.table`` does the same for a user's own CSV or Parquet table.
``write_transform_input`` writes the transform part as several headerless CSV
files (several, so MaxConcurrentTransforms and the per-file semantics matter)
and, next to them, the held-out labels plus a manifest, which is all the scoring
step needs, locally or after a cloud run. Each file is written whole or not at
all (temporary file + rename), and a full disk is one clear line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from model.errors import UserError
from model.storage import (
    WORKDIR_HINT,
    DiskFullError,
    check_free_space,
    disk_full,
    is_disk_full,
    remove_files,
    write_atomic,
)

MANIFEST_FILE = "manifest.json"
FLOAT_FORMAT = "%.6g"
DISK_HINT = WORKDIR_HINT


class DataError(UserError):
    """Data-generation settings that cannot produce a usable data set."""


@dataclass(frozen=True)
class Dataset:
    """Features and labels of the three splits.

    Generated data holds numpy arrays; a user's table holds DataFrames (features,
    named and typed) and numpy label arrays, and ``source`` says where it came from.
    """

    x_train: Any  # np.ndarray | pd.DataFrame
    y_train: np.ndarray
    x_eval: Any
    y_eval: np.ndarray
    x_transform: Any
    y_transform: np.ndarray | None  # None: a user's model run without --target
    source: str | None = None  # "data.csv (target churn)" for a user's table

    @property
    def feature_count(self) -> int:
        """Columns per row."""
        return int(self.x_train.shape[1])

    @property
    def is_table(self) -> bool:
        """True for a user's table (DataFrame features), False for generated arrays."""
        return isinstance(self.x_train, pd.DataFrame)


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
    labels_dir: Path | None  # None: no labels (a user's model run without --target)
    manifest: Path
    files: tuple[str, ...]
    rows: int


def csv_bytes(x: np.ndarray | pd.DataFrame, *, float_format: str | None = FLOAT_FORMAT) -> bytes:
    """Headerless CSV, one row per line (what the model server reads); empty field = missing.

    Arrays get ``%.6g`` numbers (compact, plenty for generated data); a user's table
    passes ``float_format=None`` and keeps every digit.
    """
    frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
    text = frame.to_csv(
        None, header=False, index=False, float_format=float_format, lineterminator="\n"
    )
    return text.encode("utf-8")


def write_csv(x: np.ndarray | pd.DataFrame, path: Path) -> None:
    """Write ``csv_bytes(x)`` to ``path`` (whole or not at all)."""
    write_atomic(path, csv_bytes(x), hint=DISK_HINT)


def read_transform_input(path: Path, metadata: dict[str, Any]) -> np.ndarray | pd.DataFrame:
    """A transform input file back as the model takes it (a DataFrame when it has names).

    ``metadata`` is the model's metadata.json: with ``feature_names`` the columns get
    those names and the text columns stay text (empty field = NaN), as at fit time.
    """
    names = metadata.get("feature_names")
    if not names:
        return pd.read_csv(path, header=None).to_numpy()
    dtypes = metadata.get("feature_dtypes") or {}
    text = {
        name: object
        for name, dtype in dtypes.items()
        if not str(dtype).startswith(("float", "int", "uint", "bool"))
    }
    return pd.read_csv(
        path, header=None, names=names, dtype=text, keep_default_na=False, na_values=[""]
    )


def has_labels(manifest: Path) -> bool:
    """Whether the manifest's transform input came with labels to score against."""
    return json.loads(manifest.read_text(encoding="utf-8")).get("labels_dir") is not None


def manifest_rows(manifest: Path) -> int:
    """Transform input rows the manifest lists (the row count when nothing is scored)."""
    document = json.loads(manifest.read_text(encoding="utf-8"))
    return sum(int(entry["rows"]) for entry in document["files"])


def check_file_count(files: int, rows: int) -> None:
    """``--files`` must give every file at least one of the ``rows`` transform rows."""
    if files < 1:
        raise DataError(f"--files must be at least 1, got {files}")
    if files > rows:
        raise DataError(f"--files {files} is more than the {rows} transform rows")


def write_transform_input(
    x: np.ndarray | pd.DataFrame, y: np.ndarray | None, directory: Path, *, files: int
) -> TransformInputSet:
    """Write ``x`` as ``files`` CSV files under ``directory/input`` and ``y`` as labels.

    Layout: ``input/part-0000.csv`` ...; ``labels/part-0000.csv`` (one label per
    line, same order); ``manifest.json`` naming each file with its row count.
    ``y=None`` writes no labels (``labels_dir`` null in the manifest: nothing to score).
    Everything is rendered in memory first: when it cannot fit, nothing is written;
    when the disk fills up anyway, what was written is removed again.
    """
    check_file_count(files, len(x))
    table = isinstance(x, pd.DataFrame)
    labels = None if y is None else np.asarray(y)
    input_dir = directory / "input"
    labels_dir = directory / "labels"
    planned: list[tuple[Path, bytes]] = []
    entries = []
    for index, rows in enumerate(np.array_split(np.arange(len(x)), files)):
        name = f"part-{index:04d}.csv"
        part = x.iloc[rows] if table else x[rows]
        data = csv_bytes(part, float_format=None if table else FLOAT_FORMAT)
        planned.append((input_dir / name, data))
        if labels is None:
            entries.append({"input": name, "rows": len(rows)})
            continue
        text = "".join(f"{label}\n" for label in labels[rows].tolist())
        planned.append((labels_dir / name, text.encode("utf-8")))
        entries.append({"input": name, "labels": name, "rows": len(rows)})
    manifest = directory / MANIFEST_FILE
    document = {
        "input_dir": "input",
        "labels_dir": None if labels is None else "labels",
        "files": entries,
    }
    planned.append((manifest, (json.dumps(document, indent=2) + "\n").encode("utf-8")))
    needed = sum(len(data) for _, data in planned)
    check_free_space(directory, needed, DISK_HINT)
    written: list[Path] = []
    try:
        input_dir.mkdir(parents=True, exist_ok=True)
        if labels is not None:
            labels_dir.mkdir(parents=True, exist_ok=True)
        for path, data in planned:
            write_atomic(path, data, hint=DISK_HINT)
            written.append(path)
    except BaseException as error:
        remove_files(written)
        for folder in (input_dir, labels_dir):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(error, DiskFullError) or is_disk_full(error):
            raise disk_full(directory, needed, DISK_HINT) from None
        raise
    return TransformInputSet(
        input_dir=input_dir,
        labels_dir=None if labels is None else labels_dir,
        manifest=manifest,
        files=tuple(e["input"] for e in entries),
        rows=len(x),
    )
