#!/usr/bin/env python3
"""Train the model, package it and run a batch transform over held-out data.

    uv run python scripts/train_and_transform.py --local
    uv run python scripts/train_and_transform.py --local --data churn.csv --target churn

``--local`` (also what runs when no cloud target is given) needs no AWS account,
Docker or Pulumi: it generates a seeded data set (or reads your CSV / Parquet
table with --data/--target), trains, writes model.tar.gz, runs the real model
server and a local Batch Transform over several CSV files, scores the .out files
against the held-out labels and prints a summary.

Structure for the cloud path: argparse lives here, each mode in a library module
(``model.pipeline`` for --local). Nothing heavy is imported before the arguments
are parsed, so --help is instant, and local mode imports nothing AWS-related.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Train a scikit-learn model, package it as model.tar.gz and run a batch transform.

--local (the default when no cloud target is given) runs everything on this
machine: the same serve the SageMaker image runs, on 127.0.0.1, and a local
Batch Transform that splits, batches and assembles like SageMaker. It prints
rows, files, accuracy on the held-out labels, training metrics, throughput and
where the artifacts are (a new artifacts/local/<date-time>/ by default).

The data is generated (seeded) unless --data PATH --target COLUMN names your own
table: a CSV with a header line, or Parquet. Numeric columns are imputed and
scaled, text/categorical ones imputed and one-hot encoded, and the label column
may hold two or more classes. --model ARCHIVE --data PATH skips training: your
own model.tar.gz transforms the table's rows, scored only when --target is given.

exit status: 0 done (every file transformed); 1 an error, or a file failed;
2 bad options; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

EPILOG = """\
examples:
  train_and_transform.py --local
  train_and_transform.py --local --rows 1000000 --files 8
  train_and_transform.py --local --class-balance 0.9,0.1 --seed 7
  train_and_transform.py --local --BatchStrategy SingleRecord --rows 20000
  train_and_transform.py --local --data churn.parquet --target churn --server-log serve.log
  train_and_transform.py --local --model model.tar.gz --data new_rows.csv
  train_and_transform.py --stack dev --logs
  train_and_transform.py --stack dev --outputs-file outputs.json --via-lambda
"""


def build_parser() -> argparse.ArgumentParser:
    """All options; the helpers imported here use the standard library only."""
    from model.batch.cli import add_job_arguments, add_server_arguments

    parser = argparse.ArgumentParser(
        prog="train_and_transform.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_argument_group("where to run (one of)").add_mutually_exclusive_group()
    mode.add_argument(
        "--local",
        action="store_true",
        help="run everything on this machine (the default when no cloud target is given)",
    )
    data = parser.add_argument_group("data and training")
    data.add_argument(
        "--rows",
        type=int,
        default=100_000,
        help="rows to generate (default 100000; at least 100 with the default splits "
        "and two classes)",
    )
    data.add_argument(
        "--features", type=int, default=20, help="features per generated row (default 20)"
    )
    data.add_argument(
        "--class-balance",
        default="0.5,0.5",
        metavar="SHARES",
        help="share of each class, e.g. 0.9,0.1 (default 0.5,0.5; more shares, more classes)",
    )
    data.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help="train on this CSV (with a header line) or Parquet table instead of generated "
        "data; needs --target (with --model: the rows to transform)",
    )
    data.add_argument(
        "--target",
        metavar="COLUMN",
        help="with --data: the column holding the class labels (optional with --model: "
        "without it the predictions are written and not scored)",
    )
    data.add_argument(
        "--model",
        type=Path,
        metavar="ARCHIVE",
        help="use your own model.tar.gz (e.g. from model.artifact.pack_model, with code/ "
        "in it) instead of training: published unchanged, it transforms every row of "
        "--data (in its metadata.json feature_names order, else the table's columns "
        "without --target)",
    )
    data.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    data.add_argument(
        "--eval-fraction", type=float, default=0.2, help="share held out for evaluation (0.2)"
    )
    data.add_argument(
        "--transform-fraction",
        type=float,
        default=0.2,
        help="share held out as transform input (0.2)",
    )
    data.add_argument(
        "--files", type=int, default=4, help="CSV files the transform input is split into (4)"
    )
    local = parser.add_argument_group("local run")
    local.add_argument(
        "--workdir",
        type=Path,
        help="new or empty run directory (default: artifacts/{local,cloud}/<date-time>)",
    )
    local.add_argument(
        "--server-log",
        type=Path,
        metavar="FILE",
        help="append serve's log to FILE (default: serve.log in the run directory)",
    )
    local.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_server_arguments(parser)
    add_job_arguments(parser)
    from model.cloud.run import add_cloud_arguments

    add_cloud_arguments(parser)
    return parser


def choose_mode(args: argparse.Namespace) -> str:
    """The mode to run: ``local`` unless a cloud target (``--stack``, ...) was given."""
    from model.cloud.run import cloud_requested

    return "cloud" if cloud_requested(args) else "local"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.console import run_main

    run = MODES[choose_mode(args)]
    return run_main(lambda: run(args))


def local_mode(args: argparse.Namespace) -> int:
    """Generate, train, package, transform locally, score, print the summary."""
    from model.batch.cli import job_from_args, server_from_args
    from model.pipeline import LocalRunConfig, data_settings_from_args, run_local
    from model.report import format_summary

    config = LocalRunConfig(
        data=data_settings_from_args(args),
        workdir=args.workdir,
        job=job_from_args(args),
        server=server_from_args(args, log_path=args.server_log),
        progress=not args.no_progress,
    )
    summary = run_local(config)
    print(format_summary(summary))
    return 0 if summary.status == "Completed" else 1


def cloud_mode(args: argparse.Namespace) -> int:
    """Train, publish, transform on the deployed stack, score (``model.cloud.run``)."""
    from model.cloud.run import run_cloud

    return run_cloud(args)


MODES = {"local": local_mode, "cloud": cloud_mode}


if __name__ == "__main__":
    sys.exit(main())
