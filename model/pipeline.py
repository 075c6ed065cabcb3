"""The ``--local`` job: data -> model -> model.tar.gz -> local Batch Transform -> score.

The data is generated (seeded) or, with ``--data PATH --target COLUMN``, a user's
own CSV or Parquet table (``model.table``); with ``--model ARCHIVE`` the user's own
model.tar.gz is used unchanged and every row of ``--data`` is transform input
(scored only with ``--target``). It is loaded, checked and split in
memory before the run directory is created, so bad data or settings (a missing
target, ``--rows 10``) leave nothing behind.

Everything the cloud run does, on this machine: the archive is the one SageMaker
would receive, the model server is the same ``serve`` the image runs, and the
runner reproduces Batch Transform's batching and assembly. The run directory keeps
every artifact (model, input, labels, output, server log, summary) for a look
afterwards; the printed summary says where.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.artifact import write_model_archive
from model.batch.local import ServerOptions, local_summary, run_local_transform
from model.batch.params import TransformJobParameters
from model.batch.progress import ProgressBar
from model.errors import UserError
from model.report import RunSummary, score_outputs
from model.report_html import add_html_report, import_plotting_in_background
from model.storage import WORKDIR_HINT, write_atomic

if TYPE_CHECKING:
    from model.data import Dataset, TransformInputSet

# model.data and model.train (numpy, pandas, scikit-learn: seconds to import) are
# imported inside train_and_package, after the checks that need none of them.

DEFAULT_BASE = Path("artifacts") / "local"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class DataSettings:
    """What data to generate and how to split it; the local and the cloud run share it."""

    rows: int = 100_000
    features: int = 20
    class_balance: tuple[float, ...] = (0.5, 0.5)
    seed: int = 42
    files: int = 4
    eval_fraction: float = 0.2
    transform_fraction: float = 0.2
    data: Path | None = None  # a user's CSV / Parquet table instead of generated data
    target: str | None = None  # its label column (required with ``data``, optional with ``model``)
    model: Path | None = None  # the user's own model.tar.gz: no training, ``data`` is transformed


# Options that shape generated data only: refused with --data (argparse name, default).
GENERATED_ONLY = (("rows", 100_000), ("features", 20), ("class_balance", "0.5,0.5"))


def data_settings_from_args(args: Any) -> DataSettings:
    """The data options both the local and the cloud command parse (argparse names)."""
    data, target = getattr(args, "data", None), getattr(args, "target", None)
    model = getattr(args, "model", None)
    if model is not None and data is None:
        raise UserError(
            f"--model {model} needs --data PATH, the CSV or Parquet table whose rows to transform"
        )
    if data is None and target is not None:
        raise UserError("--target names the label column of --data PATH: give both")
    if data is not None:
        if target is None and model is None:
            raise UserError(f"--data {data} needs --target COLUMN, the column to predict")
        changed = [
            f"--{name.replace('_', '-')}"
            for name, default in GENERATED_ONLY
            if getattr(args, name) != default
        ]
        if changed:
            flag, what = ("--model", "training data") if model else ("--data", "data")
            raise UserError(
                f"{', '.join(changed)} shape(s) generated {what}; leave them out with {flag}"
            )
    return DataSettings(
        rows=args.rows,
        features=args.features,
        class_balance=parse_class_balance(args.class_balance),
        seed=args.seed,
        files=args.files,
        eval_fraction=args.eval_fraction,
        transform_fraction=args.transform_fraction,
        data=data,
        target=target,
        model=model,
    )


@dataclass(frozen=True)
class TrainedArtifacts:
    """What ``train_and_package`` leaves in the run directory."""

    archive: Path  # model.tar.gz
    inputs: TransformInputSet  # input/*.csv, labels/*.csv, manifest.json
    training_metrics: dict[str, float | int]


@dataclass(frozen=True)
class LocalRunConfig:
    """Data, job and server settings of one local run (defaults: < 1 min on 2 cores)."""

    data: DataSettings = field(default_factory=DataSettings)
    workdir: Path | None = None
    job: TransformJobParameters = field(default_factory=TransformJobParameters)
    server: ServerOptions = field(default_factory=ServerOptions)
    progress: bool = True


def parse_class_balance(text: str) -> tuple[float, ...]:
    """``"0.7,0.3"`` -> (0.7, 0.3): one share per class, summing to 1."""
    try:
        shares = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"class balance {text!r}: use shares like 0.7,0.3") from None
    if len(shares) < 2 or any(not 0 < share < 1 for share in shares):
        raise UserError(f"class balance {text!r}: give at least two shares, each between 0 and 1")
    if abs(sum(shares) - 1) > 1e-6:
        raise UserError(f"class balance {text!r} sums to {sum(shares):g}; the shares must sum to 1")
    return shares


def new_run_directory(base: Path = DEFAULT_BASE) -> Path:
    """``artifacts/local/<date-time>`` (with a suffix if that exists already)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = base / stamp
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = base / f"{stamp}-{suffix}"
    return candidate


def remove_if_empty(directory: Path) -> None:
    """Remove ``directory`` (and its empty subdirectories) when no file was written in it."""
    if not directory.is_dir() or any(p.is_file() for p in directory.rglob("*")):
        return
    for folder in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    directory.rmdir()


def check_run_directory(workdir: Path | None, base: Path = DEFAULT_BASE) -> None:
    """UserError unless ``workdir`` is None (a fresh one will be made), new or empty."""
    if (
        workdir is not None
        and workdir.exists()
        and (not workdir.is_dir() or any(workdir.iterdir()))
    ):
        raise UserError(
            f"run directory {workdir} already exists and is not empty; choose a new "
            f"--workdir (or leave it out for a fresh one under {base}/)"
        )


def prepare_run_directory(workdir: Path | None, base: Path = DEFAULT_BASE) -> Path:
    """``workdir`` if it is new or empty (created), else a fresh ``<base>/<date-time>``."""
    check_run_directory(workdir, base)
    if workdir is None:
        workdir = new_run_directory(base)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create run directory {workdir} ({error.strerror or error}); choose "
            "another --workdir"
        ) from None
    return workdir


def prepare_dataset(data: DataSettings) -> Dataset:
    """Generate the data, or read and check the user's table, and split it (in memory).

    Every DataError (too few rows, a missing target, ...) comes from here, before
    anything is written.
    """
    from model.data import check_file_count, generate_dataset

    if data.model is not None:
        dataset = user_model_dataset(data)
    elif data.data is not None:
        from model.table import load_table_dataset

        assert data.target is not None
        dataset = load_table_dataset(
            data.data,
            data.target,
            seed=data.seed,
            eval_fraction=data.eval_fraction,
            transform_fraction=data.transform_fraction,
            files=data.files,
        )
    else:
        dataset = generate_dataset(
            rows=data.rows,
            features=data.features,
            class_balance=data.class_balance,
            seed=data.seed,
            eval_fraction=data.eval_fraction,
            transform_fraction=data.transform_fraction,
        )
    check_file_count(data.files, len(dataset.x_transform))
    return dataset


def user_model_dataset(data: DataSettings) -> Dataset:
    """``--model``: check the archive, read ``--data`` in the model's column order.

    The archive is unpacked into a temporary directory with the same checks as the
    job's own unpacking (no links or escaping paths, model.joblib at the root), so
    a bad archive is one line before anything is written. Every row is transform
    input; nothing is held out for training.
    """
    import tempfile

    import numpy as np

    from model.artifact import read_metadata, unpack_model_archive
    from model.data import Dataset
    from model.table import load_transform_table

    assert data.model is not None and data.data is not None
    with tempfile.TemporaryDirectory(prefix="model-") as temp:
        metadata = read_metadata(unpack_model_archive(data.model, Path(temp)))
    names = metadata.get("feature_names")
    x, y, source = load_transform_table(data.data, data.target, names or None)
    none = np.empty(0)
    return Dataset(x.iloc[:0], none, x.iloc[:0], none, x, y, source=source)  # type: ignore[arg-type]


def describe_data(data: DataSettings, dataset: Dataset | None = None) -> str:
    """``12,000 rows x 9 columns of churn.csv (target 'churn')`` or the generated shape."""
    if data.data is None:
        return f"{data.rows:,} rows x {data.features} features (seed {data.seed})"
    if dataset is None:
        return f"{data.data} (target {data.target!r})" if data.target else str(data.data)
    rows = len(dataset.x_train) + len(dataset.x_eval) + len(dataset.x_transform)
    return f"{rows:,} rows x {dataset.feature_count} feature columns of {dataset.source}"


def train_and_package(
    data: DataSettings,
    workdir: Path,
    *,
    say: Callable[[str], None] | None = None,
    dataset: Dataset | None = None,
) -> TrainedArtifacts:
    """Write the transform input, train, write model.tar.gz (``dataset`` from prepare_dataset).

    Without ``dataset`` the data is prepared here first. Every file is written whole
    or not at all; a full disk is a one-line DiskFullError.
    """
    from model.data import write_transform_input
    from model.train import build_metadata, train_model

    report = say or (lambda message: None)
    if dataset is None:
        dataset = prepare_dataset(data)
    report(f"writing the transform input of {describe_data(data, dataset)} into {workdir}")
    inputs = write_transform_input(
        dataset.x_transform, dataset.y_transform, workdir, files=data.files
    )
    if data.model is not None:
        report(f"using your model {data.model} unchanged (no training)")
        archive = write_atomic(workdir / "model.tar.gz", data.model.read_bytes(), hint=WORKDIR_HINT)
        return TrainedArtifacts(archive, inputs, {})
    kind = "a ColumnTransformer" if dataset.is_table else "StandardScaler"
    report(f"training {kind} + LogisticRegression on {len(dataset.x_train):,} rows")
    trained = train_model(dataset.x_train, dataset.y_train, dataset.x_eval, dataset.y_eval)
    metadata = build_metadata(trained, seed=data.seed, target=data.target)
    archive = write_model_archive(trained.pipeline, metadata, workdir / "model.tar.gz")
    return TrainedArtifacts(archive, inputs, dict(trained.metrics))


def run_local(config: LocalRunConfig, *, log: Callable[[str], None] | None = None) -> RunSummary:
    """Run the whole local job and return its summary (also written as summary.json)."""
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    started = time.perf_counter()
    step = iter(range(1, 6))

    def say_step(message: str) -> None:
        say(f"[{next(step)}/5] {message}")

    check_run_directory(config.workdir)  # the cheap check first
    verb = "reading" if config.data.data is not None else "generating"
    say_step(f"{verb} {describe_data(config.data)}")
    # Bad data or settings stop here, before the run directory exists.
    dataset = prepare_dataset(config.data)
    workdir = prepare_run_directory(config.workdir)
    try:
        trained = train_and_package(config.data, workdir, say=say_step, dataset=dataset)
    except BaseException:
        remove_if_empty(workdir)  # a run that wrote nothing leaves no directory
        raise
    archive, inputs = trained.archive, trained.inputs

    say_step("starting the model server (serve) and running the local batch transform")
    import_plotting_in_background()  # for report.html, while serve starts
    progress = ProgressBar(enabled=config.progress)
    output_dir = workdir / "output"
    server_log = config.server.log_path or workdir / "serve.log"
    try:
        local = run_local_transform(
            archive,
            inputs.input_dir,
            output_dir,
            config.job,
            server=dataclasses.replace(config.server, log_path=server_log),
            model_dir=workdir / "model",
            on_start=progress,
        )
    finally:
        progress.close()
    transform = local.transform

    if inputs.labels_dir is None:
        say_step(f"no --target: predictions are in {output_dir}, scoring skipped")
        score = None
    else:
        say_step("scoring the .out files against the held-out labels")
        completed = transform.status == "Completed"
        score = score_outputs(output_dir, inputs.manifest) if completed else None
    summary = local_summary(
        local,
        score=score,
        training_metrics=trained.training_metrics,
        artifacts={
            "run directory": str(workdir),
            "model": str(archive),
            "input": f"{inputs.input_dir} ({len(inputs.files)} CSV files)",
            "output": f"{output_dir} (.out per input file)",
            "server log": str(server_log),
        },
    )
    if inputs.labels_dir is not None:  # report.html compares with the labels
        add_html_report(workdir, summary)  # report.html next to summary.json (listed in it)
    write_atomic(workdir / SUMMARY_FILE, summary.as_json().encode("utf-8"), hint=WORKDIR_HINT)
    say(f"done in {time.perf_counter() - started:.1f} s")
    return summary
