"""Cold start with a user `inference.py`, next to the import + `model_fn` floor.

Run: `uv run python bench/cold_start.py [--rounds 5] [--workers 2]`. Prints, from
one run in alternating rounds (so other load on the machine hits all alike):

* floor (user code): a plain process that imports the serving libraries and the
  user's `code/inference.py`, and runs its `model_fn` (what any server must do
  before it can predict);
* `serve` with that `code/inference.py` (`model_fn` + `predict_fn`): seconds to
  the first 200 from /ping and to the first prediction;
* the same two for the plain model (no user code, the floor loads model.joblib),
  as the before/after reference;

each as min / median / max, and the ratio first prediction / floor of the
medians (target <= 1.3 for the user-code case, issue 11). On a loaded machine
wall time is mostly waiting for a core, so the CPU seconds each side used until
ready (floor process; `serve` parent + workers at the first prediction) are
printed too, with their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Run as a script, bench/ would come first on sys.path and bench/serving.py would
# shadow the `serving` package: put the repository root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench.serving import (  # noqa: E402 - after the sys.path fix above
    FLOOR_SNIPPET,
    RawClient,
    children_of,
    free_port,
    make_model,
    process_cpu,
    start_serve,
    stop,
    wait_ready,
)

FEATURES = 20
INFERENCE_PY = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(input_data, model):
    return model.predict_proba(input_data)[:, 1]
"""
# What a process must do before it can predict: import the libraries `serve`
# uses, then (with user code) import the user's module and run its model_fn.
FLOOR_USER = (
    "import sys, importlib.util; import serving.model_loading, serving.inference; "
    "path = sys.argv[1] + '/code/inference.py'; "
    "spec = importlib.util.spec_from_file_location('inference', path); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "module.model_fn(sys.argv[1]); print('loaded', flush=True)"
)


def floor(snippet: str, model_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds until the floor process is ready (it then waits, so its
    CPU is read before interpreter teardown, which is no part of start-up)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", snippet + "; sys.stdin.read()", str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    line = proc.stdout.readline()
    wall = time.perf_counter() - start
    cpu = process_cpu(proc.pid)
    proc.stdin.close()
    proc.wait()
    if line.strip() != "loaded":
        raise SystemExit(f"the floor process failed for {model_dir}")
    return wall, cpu


def serve_once(model_dir: Path, workers: int, probe: bytes) -> tuple[float, float, float]:
    """Seconds to the first /ping 200 and to the first prediction, and the CPU seconds
    `serve` (parent and workers) had used by then."""
    port = free_port()
    start = time.perf_counter()
    proc = start_serve(model_dir, workers, port)
    try:
        ready = wait_ready(port, proc, timeout=600) - start  # loaded machines are slow
        client = RawClient(port)
        status, body = client.post("/invocations", probe)
        first = time.perf_counter() - start
        cpu = process_cpu(proc.pid) + sum(map(process_cpu, children_of(proc.pid)))
        client.close()
        if status != 200:
            raise SystemExit(f"first prediction failed with {status}: {body[:200]!r}")
    finally:
        stop(proc)
    return ready, first, cpu


def _fmt(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as temp:
        plain = Path(temp) / "plain"
        make_model(plain, FEATURES)
        user = Path(temp) / "user"
        make_model(user, FEATURES)
        (user / "code").mkdir()
        (user / "code" / "inference.py").write_text(INFERENCE_PY)
        probe = (",".join(["0.5"] * FEATURES) + "\n").encode()
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, directory, snippet in (
                ("user", user, FLOOR_USER),
                ("plain", plain, FLOOR_SNIPPET),
            ):
                for key, value in zip(
                    ("floor", "floor cpu", "ready", "first", "serve cpu"),
                    (*floor(snippet, directory), *serve_once(directory, args.workers, probe)),
                    strict=True,
                ):
                    times.setdefault(f"{name} {key}", []).append(value)
    print(f"cold start, {args.rounds} rounds, {args.workers} workers (seconds from process start)")
    for name, label in (("user", "with code/inference.py"), ("plain", "plain model.joblib")):
        print(f"\n{label}")
        step = "model_fn" if name == "user" else "load   "
        print(f"  floor: import + {step}      {_fmt(times[f'{name} floor'])}")
        print(f"  serve: first /ping 200        {_fmt(times[f'{name} ready'])}")
        print(f"  serve: first prediction       {_fmt(times[f'{name} first'])}")
        ratio = statistics.median(times[f"{name} first"]) / statistics.median(
            times[f"{name} floor"]
        )
        print(f"  ratio first prediction / floor (medians): {ratio:.3f}  (target <= 1.3)")
        print(f"  CPU: floor {_fmt(times[f'{name} floor cpu'])}")
        print(f"       serve {_fmt(times[f'{name} serve cpu'])} (parent + workers)")
        cpu_ratio = statistics.median(times[f"{name} serve cpu"]) / statistics.median(
            times[f"{name} floor cpu"]
        )
        print(f"  ratio CPU serve / floor (medians): {cpu_ratio:.3f}  (load-independent)")
    user_cost = statistics.median(times["user first"]) - statistics.median(times["plain first"])
    print(f"\nuser code adds {user_cost:+.2f} s to the first prediction (medians)")


if __name__ == "__main__":
    main()
