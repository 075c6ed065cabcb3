#!/usr/bin/env python3
"""Run SageMaker Batch Transform locally on any model.tar.gz and input you bring.

    uv run python scripts/local_transform.py --model PATH/model.tar.gz --input DIR --output DIR

Starts the project's ``serve`` on a free loopback port with the unpacked model,
splits and batches every file under --input the way Batch Transform does, writes
``<relative path>.out`` for each into --output, stops the server, and prints a
short summary. Exit status: 0 every file done; 1 a file failed or the input is
unusable; 2 bad options; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). Job
options take SageMaker's names. Parquet and NPY input files are recognised and sent
whole (SplitType None), as Batch Transform sends them. When a file fails, serve's
log is kept and named in the summary: it holds the model's traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  local_transform.py --model model.tar.gz --input data/ --output out/
  local_transform.py --model model.tar.gz --input data/ --output out/ \\
      --JoinSource Input --InputFilter '$[1:]' --OutputFilter '$[0,-1]'
  local_transform.py --model model.tar.gz --input data/ --output out/ \\
      --BatchStrategy SingleRecord --MaxConcurrentTransforms 4
  local_transform.py --model model.joblib --input parquet-dir/ --output out/
"""


def build_parser() -> argparse.ArgumentParser:
    """The options (the helpers imported here use the standard library only)."""
    from model.batch.cli import add_job_arguments, add_server_arguments

    parser = argparse.ArgumentParser(
        prog="local_transform.py",
        description=(
            "Run a SageMaker Batch Transform job on this machine: the real model server\n"
            "(serve) on 127.0.0.1 and a runner that splits, batches, retries and assembles\n"
            "like Batch Transform. Writes <relative input path>.out per input file; a file\n"
            "that fails gets no .out, and the run exits 1 naming the file and the line."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="model.tar.gz with model.joblib at its root, or a bare model.joblib",
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="input file, or directory read recursively"
    )
    parser.add_argument("--output", required=True, type=Path, help="directory for the .out files")
    parser.add_argument(
        "--server-log",
        type=Path,
        help="append serve's log to this file (default: a temporary log, kept and named "
        "in the summary when the run fails)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_job_arguments(parser)
    add_server_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.console import run_main

    return run_main(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from model.batch.cli import job_from_args, server_from_args
    from model.batch.local import local_summary, run_local_transform
    from model.batch.progress import ProgressBar, StartupTicker
    from model.batch.runner import discover_inputs, sniff_content_type
    from model.report import format_summary

    detected = None
    if args.ContentType is None:
        detected = sniff_content_type(discover_inputs(args.input, args.output))
    job = job_from_args(args, detected)
    progress = ProgressBar(enabled=not args.no_progress)
    ticker = StartupTicker(sys.stderr)
    try:
        with ticker:
            result = run_local_transform(
                args.model,
                args.input,
                args.output,
                job,
                server=server_from_args(args, log_path=args.server_log),
                on_start=ticker.then(progress),
                on_launch=ticker.begin,
            )
    finally:
        progress.close()
    artifacts = {"output": str(args.output)}
    if result.server_log is not None:
        artifacts["server log"] = str(result.server_log)
    print(format_summary(local_summary(result, artifacts=artifacts)))
    return 0 if result.transform.status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
