"""Numeric CSV decode speed per core: the candidates side by side, on one thread.

Run: `uv run python bench/csv_decode.py` (`--help` for knobs). For each payload
shape (6 MiB of 20 and of 200 float features, written as `bench/serving.py`
writes them) it times every candidate decoder on the same bytes, in
interleaved rounds, and prints rows/s and MB/s per core (CPU time of this
process, so other load on the machine disturbs it less than wall time) as
min / median / max over the rounds, plus each candidate's ratio to the decoder
that served before this bench existed ("before": pandas in 1 MiB blocks, read
from git at BEFORE_COMMIT) and whether its matrix is bit-identical to it.

Candidates: the serving decoder now ("after": `serving.codecs.decode_csv`); pandas'
C parser alone (parse only, and parse + the conversion to a matrix: the
"non-parser" share); pyarrow.csv and polars, each held to one thread;
pysimdjson reading the lines as JSON arrays (parse alone, none of the checks);
and numpy's own text reader. A library that is not installed is reported as such.
`--parquet` adds the Parquet readers' speed on the same rows (polars, pyarrow,
fastparquet: `uv pip install` the ones missing to compare them).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# One thread per decoder: the server runs one worker per core.
for _variable in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO / "container") not in sys.path:
    sys.path.insert(0, str(REPO / "container"))

from bench.serving import MIB, make_payloads  # noqa: E402

# The last commit whose serving.codecs decoded CSV with pandas in 1 MiB blocks.
BEFORE_COMMIT = "e49da2b"

Decoder = Callable[[bytes, int], np.ndarray]


def _before_decoder() -> Decoder | None:
    """`decode_csv` as it was at BEFORE_COMMIT, loaded from git (None without git)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE_COMMIT}:container/serving/codecs.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("codecs_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{BEFORE_COMMIT}:codecs.py", "exec"), module.__dict__)  # noqa: S102
    return module.decode_csv


def candidates() -> dict[str, Decoder | str]:
    """Name -> decoder, or a string saying why it is unavailable."""
    import pandas as pd

    from serving.codecs import decode_csv

    found: dict[str, Decoder | str] = {}
    before = _before_decoder()
    found["before: pandas, 1 MiB blocks"] = before or f"git show {BEFORE_COMMIT} failed"
    found["after: serving.codecs.decode_csv"] = decode_csv

    def pandas_parse(body: bytes, width: int) -> np.ndarray:
        frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64, engine="c")
        return frame  # type: ignore[return-value]  # parse only: no matrix

    def pandas_matrix(body: bytes, width: int) -> np.ndarray:
        frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64, engine="c")
        return frame.to_numpy(dtype=np.float64)

    found["pandas parse only (no matrix)"] = pandas_parse
    found["pandas parse + to_numpy"] = pandas_matrix

    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)

        def arrow(body: bytes, width: int) -> np.ndarray:
            table = pacsv.read_csv(
                pa.py_buffer(body),
                read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=False),
                parse_options=pacsv.ParseOptions(quote_char=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={f"f{i}": pa.float64() for i in range(width)},
                    null_values=["", "NaN", "nan", "NA", "null"],
                ),
            )
            return np.column_stack([column.to_numpy() for column in table.columns])

        found[f"pyarrow.csv {pa.__version__}, 1 thread"] = arrow
    except ImportError:
        found["pyarrow.csv"] = "not installed"

    try:
        import polars as pl

        def polars(body: bytes, width: int) -> np.ndarray:
            schema = {f"c{i}": pl.Float64 for i in range(width)}
            frame = pl.read_csv(body, has_header=False, quote_char=None, schema=schema)
            return frame.to_numpy()

        found[f"polars {pl.__version__}, 1 thread"] = polars
    except ImportError:
        found["polars"] = "not installed"

    try:
        import simdjson

        parser = simdjson.Parser()

        def as_json(body: bytes, width: int) -> np.ndarray:
            document = parser.parse(b"[[" + body.rstrip(b"\n").replace(b"\n", b"],[") + b"]]")
            flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
            del document
            return flat.reshape(-1, width)

        found["pysimdjson, lines as JSON arrays"] = as_json
    except ImportError:
        found["pysimdjson"] = "not installed"

    def loadtxt(body: bytes, width: int) -> np.ndarray:
        return np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float64, ndmin=2)

    found[f"numpy {np.__version__} loadtxt"] = loadtxt
    return found


def measure(rounds: int, features: list[int], payload_mib: float) -> None:
    from serving.runtime import tune_allocator

    tune_allocator()  # as serve and the floor do: decoding speed depends on it
    decoders = candidates()
    for name, decoder in decoders.items():
        if isinstance(decoder, str):
            print(f"  {name}: {decoder}")
    usable = {name: d for name, d in decoders.items() if not isinstance(d, str)}
    for width in features:
        body = make_payloads(1, int(payload_mib * MIB), width)[0]
        rows = body.count(b"\n")
        reference_name = next(iter(usable))
        reference = np.asarray(usable[reference_name](body, width))
        same: dict[str, str] = {}
        for name, decoder in usable.items():
            out = decoder(body, width)  # also warms the decoder up
            if not isinstance(out, np.ndarray):
                same[name] = "-"
            else:
                equal = out.shape == reference.shape and np.array_equal(
                    out.view(np.uint64), reference.view(np.uint64)
                )
                same[name] = "yes" if equal else "NO"
        seconds: dict[str, list[float]] = {name: [] for name in usable}
        for _ in range(rounds):
            for name, decoder in usable.items():  # interleaved: load hits all alike
                start = time.process_time()
                decoder(body, width)
                seconds[name].append(time.process_time() - start)
        before = statistics.median(seconds[reference_name])
        print(
            f"\n{width} features: {len(body) / MIB:.2f} MiB, {rows:,} rows; {rounds} rounds; "
            f"per core = per CPU-second of this process; MB = MiB of CSV"
        )
        print(
            f"{'candidate':<34} {'rows/s per core (min / median / max)':>38} "
            f"{'MB/s per core (median)':>23} {'x before':>9} {'same bits':>10}"
        )
        for name, times in seconds.items():
            rates = sorted(rows / t for t in times)
            mb = len(body) / MIB / statistics.median(times)
            print(
                f"{name:<34} {rates[0]:>12,.0f} / {statistics.median(rates):>10,.0f} / "
                f"{rates[-1]:>10,.0f} {mb:>23.0f} {before / statistics.median(times):>9.2f} "
                f"{same[name]:>10}"
            )


def parquet_readers() -> dict[str, Callable[[bytes], np.ndarray] | str]:
    """Name -> Parquet bytes to float matrix, or why it is unavailable."""
    found: dict[str, Callable[[bytes], np.ndarray] | str] = {}
    try:
        import polars as pl

        found[f"polars {pl.__version__}"] = lambda data: pl.read_parquet(
            io.BytesIO(data)
        ).to_numpy()
    except ImportError:
        found["polars"] = "not installed"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pa.set_cpu_count(1)

        def arrow(data: bytes) -> np.ndarray:
            table = pq.read_table(io.BytesIO(data), use_threads=False)
            return np.column_stack([column.to_numpy() for column in table.columns])

        found[f"pyarrow {pa.__version__}"] = arrow
    except ImportError:
        found["pyarrow"] = "not installed"
    try:
        import fastparquet

        found[f"fastparquet {fastparquet.__version__}"] = lambda data: (
            fastparquet.ParquetFile(io.BytesIO(data)).to_pandas().to_numpy()
        )
    except ImportError:
        found["fastparquet"] = "not installed"
    return found


def measure_parquet(rounds: int, features: list[int], payload_mib: float) -> None:
    """Read speed of the Parquet candidates on the CSV payloads' rows (snappy, one row group)."""
    import pandas as pd

    readers = parquet_readers()
    for name, reader in readers.items():
        if isinstance(reader, str):
            print(f"  {name}: {reader}")
    usable = {name: r for name, r in readers.items() if not isinstance(r, str)}
    if not usable:
        return
    for width in features:
        body = make_payloads(1, int(payload_mib * MIB), width)[0]
        matrix = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64).to_numpy()
        sink = io.BytesIO()
        pd.DataFrame(matrix, columns=[f"f{i}" for i in range(width)]).to_parquet(sink)
        data = sink.getvalue()
        seconds: dict[str, list[float]] = {name: [] for name in usable}
        for _ in range(rounds):
            for name, reader in usable.items():
                start = time.process_time()
                reader(data)
                seconds[name].append(time.process_time() - start)
        rows = len(matrix)
        print(
            f"\nParquet read, {width} features: {rows:,} rows, {len(data) / MIB:.2f} MiB file "
            f"(same rows as the {payload_mib:g} MiB CSV); {rounds} rounds"
        )
        print(f"{'reader':<34} {'rows/s per core (min / median / max)':>38}")
        for name, times in seconds.items():
            rates = sorted(rows / t for t in times)
            print(
                f"{name:<34} {rates[0]:>12,.0f} / {statistics.median(rates):>10,.0f} / "
                f"{rates[-1]:>10,.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--features", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--payload-mib", type=float, default=6.0)
    parser.add_argument(
        "--parquet",
        action="store_true",
        help="also time the Parquet readers (polars, pyarrow, "
        "fastparquet: whichever are installed)",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    measure(args.rounds, args.features, args.payload_mib)
    if args.parquet:
        measure_parquet(args.rounds, args.features, args.payload_mib)


if __name__ == "__main__":
    main()
