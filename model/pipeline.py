"""The ``--local`` job: data -> model -> model.tar.gz -> local Batch Transform -> score.

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

if TYPE_CHECKING:
    from model.data import TransformInputSet

# model.data and model.train (numpy, pandas, scikit-learn: seconds to import) are
# imported inside train_and_package, after the checks that need none of them.

DEFAULT_BASE = Path("artifacts") / "local"


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


def data_settings_from_args(args: Any) -> DataSettings:
    """The data options both the local and the cloud command parse (argparse names)."""
    return DataSettings(
        rows=args.rows,
        features=args.features,
        class_balance=parse_class_balance(args.class_balance),
        seed=args.seed,
        files=args.files,
        eval_fraction=args.eval_fraction,
        transform_fraction=args.transform_fraction,
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


def prepare_run_directory(workdir: Path | None, base: Path = DEFAULT_BASE) -> Path:
    """``workdir`` if it is new or empty (created), else a fresh ``<base>/<date-time>``."""
    if workdir is None:
        workdir = new_run_directory(base)
    elif workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise UserError(
            f"run directory {workdir} already exists and is not empty; choose a new "
            f"--workdir (or leave it out for a fresh one under {base}/)"
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create run directory {workdir} ({error.strerror or error}); choose "
            "another --workdir"
        ) from None
    return workdir


def train_and_package(
    data: DataSettings, workdir: Path, *, say: Callable[[str], None] | None = None
) -> TrainedArtifacts:
    """Generate and split the data, write the transform input, train, write model.tar.gz."""
    from model.data import generate_dataset, write_transform_input
    from model.train import build_metadata, train_model

    report = say or (lambda message: None)
    report(
        f"generating {data.rows:,} rows x {data.features} features (seed {data.seed}) "
        f"into {workdir}"
    )
    dataset = generate_dataset(
        rows=data.rows,
        features=data.features,
        class_balance=data.class_balance,
        seed=data.seed,
        eval_fraction=data.eval_fraction,
        transform_fraction=data.transform_fraction,
    )
    inputs = write_transform_input(
        dataset.x_transform, dataset.y_transform, workdir, files=data.files
    )
    report(f"training StandardScaler + LogisticRegression on {len(dataset.x_train):,} rows")
    trained = train_model(dataset.x_train, dataset.y_train, dataset.x_eval, dataset.y_eval)
    archive = write_model_archive(
        trained.pipeline, build_metadata(trained, seed=data.seed), workdir / "model.tar.gz"
    )
    return TrainedArtifacts(archive, inputs, dict(trained.metrics))


def run_local(config: LocalRunConfig, *, log: Callable[[str], None] | None = None) -> RunSummary:
    """Run the whole local job and return its summary (also written as summary.json)."""
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    workdir = prepare_run_directory(config.workdir)
    started = time.perf_counter()
    step = iter(range(1, 5))

    def say_step(message: str) -> None:
        say(f"[{next(step)}/4] {message}")

    trained = train_and_package(config.data, workdir, say=say_step)
    archive, inputs = trained.archive, trained.inputs

    say_step("starting the model server (serve) and running the local batch transform")
    progress = ProgressBar(enabled=config.progress)
    output_dir = workdir / "output"
    server_log = workdir / "serve.log"
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

    say_step("scoring the .out files against the held-out labels")
    score = score_outputs(output_dir, inputs.manifest) if transform.status == "Completed" else None
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
    (workdir / "summary.json").write_text(summary.as_json())
    say(f"done in {time.perf_counter() - started:.1f} s")
    return summary
