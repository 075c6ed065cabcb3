"""The ``--stack`` options and the checks that need no AWS (the run itself: ``run.py``).

``scripts/train_and_transform.py`` imports this (through ``model.cloud.run``) to
build its parser even for ``--help`` and ``--local``, so only the standard library
is imported at the top; ``check_options`` imports the training code it needs.
Everything here is checked before the cloud run asks AWS anything or costs money.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model.errors import UserError

if TYPE_CHECKING:
    from model.batch.params import TransformJobParameters
    from model.data import Dataset
    from model.pipeline import DataSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STACK = "dev"
DEFAULT_BASE = Path("artifacts") / "cloud"
SCRIPT = "python scripts/train_and_transform.py"


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--stack`` options (the data, training and job options are shared with --local)."""
    group = parser.add_argument_group(
        "cloud run on a deployed stack (needs AWS credentials; --stack or --outputs-file)"
    )
    group.add_argument(
        "--stack",
        nargs="?",
        const=DEFAULT_STACK,
        metavar="NAME",
        help=f"run on this Pulumi stack, reading its outputs (`--stack` alone, or only "
        f"--outputs-file: {DEFAULT_STACK})",
    )
    group.add_argument(
        "--outputs-file",
        type=Path,
        metavar="FILE",
        help="read the outputs from FILE (`pulumi stack output --json > FILE`) instead of "
        "through the Pulumi CLI",
    )
    group.add_argument(
        "--project-dir",
        type=Path,
        default=REPO_ROOT,
        metavar="DIR",
        help="directory of Pulumi.yaml (default: the repository root)",
    )
    group.add_argument(
        "--instance-type",
        default="ml.m5.large",
        help="transform instance type (default ml.m5.large)",
    )
    group.add_argument(
        "--instance-count",
        type=int,
        default=1,
        metavar="N",
        help="transform instances; they split the work by file (default 1)",
    )
    group.add_argument(
        "--logs", action="store_true", help="stream the job's CloudWatch logs while waiting"
    )
    group.add_argument(
        "--no-wait",
        action="store_true",
        help="start the job, print its name and the command to follow it, and exit",
    )
    group.add_argument(
        "--via-lambda",
        action="store_true",
        help="upload the input under the trigger's input prefix and follow the job(s) the "
        "Lambda starts, instead of starting one here",
    )
    group.add_argument(
        "--lambda-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="with --via-lambda: seconds to wait for the trigger's jobs to appear (300)",
    )
    group.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="follow the job(s) of an earlier run (its artifacts/cloud/<date-time> directory), "
        "then download and score the results",
    )
    group.add_argument(
        "--poll-seconds",
        type=int,
        default=5,
        metavar="S",
        help="seconds between status checks while waiting (default 5)",
    )


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Data and training options, as scripts/train_and_transform.py has them.

    Only ``python -m model.cloud`` needs this; the script defines the same options for
    both modes (tests/pipeline/test_cloud_cli.py checks that the two agree).
    """
    data = parser.add_argument_group("data and training")
    data.add_argument("--rows", type=int, default=100_000, help="rows to generate (100000)")
    data.add_argument("--features", type=int, default=20, help="features per row (20)")
    data.add_argument("--class-balance", default="0.5,0.5", metavar="SHARES")
    data.add_argument("--data", type=Path, metavar="PATH", help="CSV or Parquet table to train on")
    data.add_argument("--target", metavar="COLUMN", help="with --data: the label column")
    data.add_argument(
        "--model", type=Path, metavar="ARCHIVE", help="your model.tar.gz: no training"
    )
    data.add_argument("--seed", type=int, default=42, help="random seed (42)")
    data.add_argument("--eval-fraction", type=float, default=0.2)
    data.add_argument("--transform-fraction", type=float, default=0.2)
    data.add_argument("--files", type=int, default=4, help="CSV files of transform input (4)")
    data.add_argument(
        "--workdir", type=Path, help="new or empty run directory (artifacts/cloud/<date-time>)"
    )


def cloud_requested(args: argparse.Namespace) -> bool:
    """True when the command line asks for the cloud run (--stack, --outputs-file, --resume)."""
    return any(
        getattr(args, name, None) is not None for name in ("stack", "outputs_file", "resume")
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m model.cloud`` (the script has its own, with --local)."""
    from model.batch.cli import add_job_arguments

    parser = argparse.ArgumentParser(
        prog="python -m model.cloud",
        description="Train, publish and batch-transform on a deployed stack "
        "(what `scripts/train_and_transform.py --stack` runs).",
    )
    add_cloud_arguments(parser)
    add_training_arguments(parser)
    add_job_arguments(parser)
    return parser


@dataclass(frozen=True)
class CheckedOptions:
    """What ``check_options`` read and checked: the job parameters and the data."""

    parameters: TransformJobParameters
    data: DataSettings
    dataset: Dataset


def check_options(args: argparse.Namespace) -> CheckedOptions:
    """Everything that needs no AWS: job parameters, instances, data settings."""
    from model.batch.cli import job_from_args
    from model.cloud.job import check_resources
    from model.pipeline import check_run_directory, data_settings_from_args, prepare_dataset

    check_resources(args.instance_type, args.instance_count)
    check_run_directory(args.workdir, DEFAULT_BASE)
    if args.poll_seconds < 1:
        raise UserError(f"--poll-seconds must be at least 1, got {args.poll_seconds}")
    if args.lambda_timeout < 0:
        raise UserError(f"--lambda-timeout must be 0 seconds or more, got {args.lambda_timeout:g}")
    if getattr(args, "server_log", None) is not None:
        raise UserError(
            "--server-log is for --local runs; the cloud job logs to CloudWatch (add --logs)"
        )
    parameters = job_from_args(args)
    # The data is generated or read and checked here, before AWS is asked anything.
    data = data_settings_from_args(args)
    return CheckedOptions(parameters, data, prepare_dataset(data))
