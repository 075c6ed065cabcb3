#!/usr/bin/env python3
"""Local Batch Transform throughput vs the in-process floor, measured side by side.

    uv run python bench/local_transform.py            # ~220 MB of CSV, 20 features

1. Writes >= 200 MB of headerless CSV (20 features) as several files into a
   temporary directory, trains a model and packages it as model.tar.gz.
2. Runs the local Batch Transform with the default job settings (nothing set on
   the job: ``serve`` decides through /execution-parameters, one worker and one
   request in flight per CPU, 6 MiB MultiRecord payloads) and times it from the
   first request to the last ``.out`` (server start-up excluded, reported apart).
3. The floor, in the same run: the same mini-batches of the same files, cut the
   same way, handed to ``serving.inference.transform`` (parse + predict + format,
   no HTTP, no runner) by a pool of as many processes as the server has workers.
4. Prints rows/s for both and the ratio runner/floor (target: at least 0.7).
5. A SingleRecord run (issue 13): one request per row over ``--single-rows`` rows
   of the same data, concurrency as the server offers, rows/s per round. This is the
   small-request case (Batch Transform with SingleRecord) that connection handling in
   ``serve`` decides; there is no floor to compare it to, so it prints rows/s and the
   mean time per request.

Every figure is printed per round and as min / median / max over ``--repeat`` rounds.

The temporary directory is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a script, bench/ would come first on sys.path and bench/serving.py would
# hide the serving package: look modules up from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

TARGET_RATIO = 0.7
FEATURES = 20


def write_inputs(directory: Path, megabytes: int, files: int, seed: int) -> tuple[int, int]:
    """``files`` CSV files totalling at least ``megabytes`` MB; returns (rows, bytes)."""
    import numpy as np
    import pandas as pd

    from model.data import FLOAT_FORMAT

    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per_file = megabytes * 1_000_000 // files
    rows = 0
    for index in range(files):
        path = directory / f"part-{index:04d}.csv"
        with path.open("w", newline="") as out:
            while out.tell() < per_file:
                chunk = rng.standard_normal((20_000, FEATURES))
                pd.DataFrame(chunk).to_csv(
                    out, header=False, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
                )
                rows += len(chunk)
    return rows, sum(p.stat().st_size for p in directory.iterdir())


def train_archive(directory: Path, seed: int) -> Path:
    from model.artifact import write_model_archive
    from model.data import generate_dataset
    from model.train import build_metadata, train_model

    data = generate_dataset(rows=20_000, features=FEATURES, seed=seed)
    trained = train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)
    return write_model_archive(
        trained.pipeline, build_metadata(trained, seed=seed), directory / "model.tar.gz"
    )


def cut_batches(paths: list[Path], limit: int) -> list[tuple[str, int, int, int]]:
    """(path, offset, length, records) of every MultiRecord batch, cut like the runner."""
    from model.batch.records import iter_batches_fast

    tasks = []
    for path in paths:
        offset = 0
        with path.open("rb") as stream:
            for batch in iter_batches_fast(stream, limit):
                tasks.append((str(path), offset, len(batch.payload), batch.records))
                offset += batch.input_bytes
    return tasks


_MODEL = None


def _load(model_dir: str, workers: int) -> None:
    global _MODEL  # one model per pool process
    # Exactly what `serve` does per worker before numpy loads: cap BLAS/OpenMP pools
    # at their share of the cores, so the floor does not oversubscribe the CPUs.
    from serving.cli import limit_native_threads

    limit_native_threads(workers)
    from serving.inference import warm_up
    from serving.model_loading import load_model

    _MODEL = load_model(model_dir)
    warm_up(_MODEL)


def _transform(task: tuple[str, int, int, int]) -> int:
    from serving.inference import transform

    path, offset, length, _ = task
    with open(path, "rb") as stream:  # noqa: PTH123 - hot path, plain open
        stream.seek(offset)
        body = stream.read(length)
    answer, _ = transform(_MODEL, body, "text/csv", None)
    return answer.count(b"\n") + (0 if answer.endswith(b"\n") else 1)


def _ready(_: int) -> int:
    return os.getpid()


def measure_floor(model_dir: Path, tasks: list, workers: int) -> tuple[float, int]:
    """Seconds and rows for the in-process floor over ``tasks`` with ``workers`` processes."""
    # spawn, not fork: this process has numpy loaded already, and the thread caps only
    # work when they are set before numpy is imported.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_load,
        initargs=(str(model_dir), workers),
    ) as pool:
        list(pool.map(_ready, range(workers * 4)))  # every process up and warm
        started = time.perf_counter()
        rows = sum(pool.map(_transform, tasks, chunksize=1))
        seconds = time.perf_counter() - started
    expected = sum(task[3] for task in tasks)
    if rows != expected:
        raise SystemExit(f"floor produced {rows} rows for {expected} records")
    return seconds, rows


def measure_runner(
    archive: Path, inputs: Path, output: Path, workers: int | None, strategy: str | None = None
):
    from model.batch.local import ServerOptions, run_local_transform
    from model.batch.params import TransformJobParameters

    if output.exists():
        shutil.rmtree(output)
    result = run_local_transform(
        archive,
        inputs,
        output,
        TransformJobParameters(BatchStrategy=strategy),
        server=ServerOptions(workers=workers),
    )
    if result.transform.status != "Completed":
        raise SystemExit(f"local transform failed: {result.transform.failure_reason}")
    return result


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """``min / median / max`` of a figure over the rounds."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"min {low:{fmt}}  median {mid:{fmt}}  max {high:{fmt}}"


def measure_single_record(root: Path, archive: Path, rows: int, repeat: int) -> list[float]:
    """Rows/s of SingleRecord runs (one request per row) over the first ``rows`` rows."""
    if rows <= 0:
        return []
    source = sorted((root / "input").glob("*.csv"))[0]
    single = root / "single"
    single.mkdir(exist_ok=True)
    with source.open("rb") as stream, (single / "rows.csv").open("wb") as out:
        for _, line in zip(range(rows), stream, strict=False):
            out.write(line)
    runs = []
    for attempt in range(1, repeat + 1):
        result = measure_runner(archive, single, root / "single-out", None, "SingleRecord")
        transform = result.transform
        runs.append(transform.records / transform.seconds)
        per_request = transform.seconds / transform.records * 1000
        print(
            f"single  #{attempt}: {transform.records:,} rows in {transform.seconds:.2f} s = "
            f"{runs[-1]:,.0f} rows/s ({per_request:.2f} ms per request; "
            f"{transform.parameters.describe()})"
        )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=210, help="MB of CSV to generate (210)")
    parser.add_argument("--files", type=int, default=8, help="input files (8)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each run (3)")
    parser.add_argument(
        "--single-rows",
        type=int,
        default=20_000,
        help="rows for the SingleRecord run, one request each (20,000; 0 skips it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from serving.settings import available_cpus

    cores = available_cpus()
    load = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-local-transform-"))
    try:
        print(f"machine: {cores} CPUs available, load average {load[0]:.2f} at start")
        started = time.perf_counter()
        rows, size = write_inputs(root / "input", args.mb, args.files, args.seed)
        archive = train_archive(root, args.seed)
        print(
            f"data: {size / 1e6:,.0f} MB ({size / 2**20:,.0f} MiB) of CSV, {rows:,} rows x "
            f"{FEATURES} features in {args.files} files (written in "
            f"{time.perf_counter() - started:.0f} s)"
        )
        from model.artifact import unpack_model_archive

        model_dir = unpack_model_archive(archive, root / "model")

        runner_runs, floor_runs = [], []
        tasks = None
        for attempt in range(1, args.repeat + 1):
            result = measure_runner(archive, root / "input", root / "output", None)
            transform = result.transform
            runner_runs.append(transform.records / transform.seconds)
            parameters = transform.parameters
            print(
                f"runner  #{attempt}: {transform.records:,} rows in {transform.seconds:.2f} s = "
                f"{runner_runs[-1]:,.0f} rows/s, {size / 2**20 / transform.seconds:,.1f} MiB/s "
                f"({parameters.describe()}; serve ready in {result.startup_seconds:.1f} s)"
            )
            if tasks is None:
                tasks = cut_batches(
                    sorted((root / "input").glob("*.csv")), parameters.max_payload_bytes
                )
            processes = parameters.MaxConcurrentTransforms
            seconds, floor_rows = measure_floor(model_dir, tasks, processes)
            floor_runs.append(floor_rows / seconds)
            print(
                f"floor   #{attempt}: {floor_rows:,} rows in {seconds:.2f} s = "
                f"{floor_runs[-1]:,.0f} rows/s, {size / 2**20 / seconds:,.1f} MiB/s "
                f"({len(tasks)} batches, {processes} processes, "
                "serving.inference.transform)"
            )
        single_runs = measure_single_record(root, archive, args.single_rows, args.repeat)
        print(f"MultiRecord rows/s   {spread(runner_runs)}")
        print(f"floor rows/s         {spread(floor_runs)}")
        ratios = [r / f for r, f in zip(runner_runs, floor_runs, strict=True)]
        print(f"ratio runner/floor   {spread(ratios, '.2f')} (each round's own pair)")
        if single_runs:
            print(f"SingleRecord rows/s  {spread(single_runs)}")
        ratio = statistics.median(ratios)
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(
            f"result: median ratio {ratio:.2f} ({verdict} the {TARGET_RATIO} target; "
            f"{args.repeat} rounds)"
        )
        end_load = os.getloadavg()[0]
        print(f"load average {end_load:.2f} at the end")
        return 0 if ratio >= TARGET_RATIO else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
