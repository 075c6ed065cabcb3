"""Import cost of the handler: nothing beyond boto3 but its own small modules.

The timing itself is bench/lambda_cold_start.py (ratio to ``import boto3`` < 1.2);
this test pins the cause deterministically, so a heavy import cannot slip in unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Standard-library modules the handler may add on top of what boto3 already loaded.
ALLOWED_EXTRA = {"unicodedata"}


def test_handler_import_adds_only_its_own_modules_to_boto3() -> None:
    code = (
        "import json, sys\n"
        "import boto3\n"
        "before = set(sys.modules)\n"
        "import lambda_handler.handler\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    added = set(json.loads(out.stdout))
    foreign = {m for m in added if m.split(".")[0] != "lambda_handler"} - ALLOWED_EXTRA
    assert not foreign, f"handler import pulls in {sorted(foreign)}"


def test_handler_import_creates_no_client_and_makes_no_call() -> None:
    code = (
        "import botocore.endpoint as e\n"
        "def refuse(*a, **k): raise SystemExit('network call at import')\n"
        "e.Endpoint.make_request = refuse\n"
        "import lambda_handler.handler as h\n"
        "print(len(h._CLIENTS))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    assert out.stdout.strip() == "0"


def test_the_benchmark_runs() -> None:
    spec = importlib.util.spec_from_file_location(
        "lambda_cold_start", REPO / "bench/lambda_cold_start.py"
    )
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # Timing limits are the benchmark's job (run on its own); here it must run and report.
    assert bench.main(["--rounds", "3", "--max-ratio", "100"]) == 0
