"""Cold-start import cost of the Lambda handler next to ``import boto3`` alone.

The handler imports boto3 at init (clients are created lazily), so its import can
never be cheaper than boto3's; the question is how much our own modules add. Each
sample is a fresh interpreter that times only the import statement (interpreter
start-up excluded), the two kinds interleaved so machine load affects both alike.

Like a real Lambda cold start, the handler package is imported from a fresh copy with
no bytecode cache (the deployment archive ships sources only, so the runtime compiles
them on the first import), while boto3 comes from its installed, already compiled
files. A second row shows the handler with a warm bytecode cache: the cost of running
our module bodies alone.

    uv run python bench/lambda_cold_start.py [--rounds 15] [--max-ratio 1.2]

Exits 1 when the median ratio (handler / boto3) is not below --max-ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lambda_handler"
SNIPPET = (
    "import time\nt0 = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t0)\n"
)


def _time_import(module: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds spent in ``import module`` in a new interpreter.

    ``cwd`` matters: ``python -c`` puts the working directory first on sys.path, so it
    is a scratch directory, never the repository (whose lambda_handler/ would win).
    """
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    return float(out.stdout.strip())


def _imported_from(env: dict[str, str], cwd: Path) -> Path:
    code = "import lambda_handler.handler as h; print(h.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=cwd
    )
    return Path(out.stdout.strip())


def _fresh_copy(root: Path) -> Path:
    """A copy of lambda_handler/ without __pycache__, as the deployment archive has it."""
    target = Path(tempfile.mkdtemp(dir=root))
    shutil.copytree(
        PACKAGE, target / "lambda_handler", ignore=shutil.ignore_patterns("__pycache__")
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="samples of each kind (default 15)")
    parser.add_argument("--max-ratio", type=float, default=1.2, help="fail at or above this")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    base_env["AWS_DEFAULT_REGION"] = base_env.get("AWS_DEFAULT_REGION", "us-east-1")
    samples: dict[str, list[float]] = {"boto3": [], "handler (cold)": [], "handler (cached)": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cached = _fresh_copy(root)
        cached_env = base_env | {"PYTHONPATH": str(cached)}
        where = _imported_from(cached_env, root)
        if not where.is_relative_to(cached):
            raise SystemExit(f"the timed import would load {where}, not the fresh copy")
        # Warm-up: boto3's bytecode and the cached copy's bytecode exist before timing.
        _time_import("boto3", base_env, root)
        _time_import("lambda_handler.handler", cached_env, root)
        for _ in range(args.rounds):
            samples["boto3"].append(_time_import("boto3", base_env, root))
            cold = _fresh_copy(root)
            cold_env = base_env | {"PYTHONPATH": str(cold), "PYTHONDONTWRITEBYTECODE": "1"}
            samples["handler (cold)"].append(_time_import("lambda_handler.handler", cold_env, root))
            samples["handler (cached)"].append(
                _time_import("lambda_handler.handler", cached_env, root)
            )

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"Python {sys.version.split()[0]}, {args.rounds} fresh interpreters per row, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'import':<24}{'median ms':>10}{'min ms':>10}{'max ms':>10}{'ratio':>8}")
    for name, values in samples.items():
        ratio = medians[name] / medians["boto3"]
        print(
            f"{name:<24}{medians[name] * 1e3:>10.1f}{min(values) * 1e3:>10.1f}"
            f"{max(values) * 1e3:>10.1f}{ratio:>8.3f}"
        )
    ratio = medians["handler (cold)"] / medians["boto3"]
    verdict = "OK" if ratio < args.max_ratio else "TOO SLOW"
    print(f"handler (cold) / boto3 = {ratio:.3f} (limit < {args.max_ratio}): {verdict}")
    return 0 if ratio < args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
