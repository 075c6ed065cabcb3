"""Import cost of the cloud path's dependencies, each in a fresh interpreter (best of N).

    uv run python tests/pipeline/cloud_import_times.py [--full-sdk DIR] [--runs 5]

Prints wall-clock milliseconds for ``python -c "<import>"`` minus an empty
interpreter, so the figures are what each import adds to a command's start-up.
``--full-sdk DIR`` also times the imports against the full ``sagemaker`` package
installed into DIR (``uv pip install --target DIR "sagemaker>=3"``), which is never
installed into the project environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

IMPORTS = {
    "model.cloud.run (what --help / --local load)": "import model.cloud.run",
    "boto3": "import boto3",
    "pulumi.automation": "from pulumi import automation",
    "sagemaker.core.resources": "import sagemaker.core.resources",
    "sagemaker.core.resources + shapes used": (
        "from sagemaker.core.resources import Model, TransformJob; "
        "from sagemaker.core.shapes import ContainerDefinition, TransformInput"
    ),
}
FULL_ONLY = {
    "sagemaker.train (full SDK)": "import sagemaker.train",
    "sagemaker.serve (full SDK)": "import sagemaker.serve",
}


def best_of(code: str, runs: int, env: dict[str, str]) -> float:
    """Fastest wall time of ``python -c code`` in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-sdk", help="directory the full sagemaker package is installed in")
    args = parser.parse_args()
    environments = {"sagemaker-core (project env)": dict(os.environ)}
    if args.full_sdk:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.full_sdk, env.get("PYTHONPATH")]))
        environments["full sagemaker SDK"] = env
    for label, env in environments.items():
        empty = best_of("pass", args.runs, env)
        print(f"{label}: empty interpreter {empty * 1000:.0f} ms; imports add:")
        imports = dict(IMPORTS)
        if label.startswith("full"):
            imports.update(FULL_ONLY)
        for name, code in imports.items():
            try:
                seconds = best_of(code, args.runs, env) - empty
            except subprocess.CalledProcessError:
                print(f"  {name:<45} (not importable here)")
                continue
            print(f"  {name:<45} {seconds * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
