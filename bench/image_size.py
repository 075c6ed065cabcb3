#!/usr/bin/env python3
"""How big is the serving image, and how much does container/Dockerfile add to its base?

    uv run python bench/image_size.py            # measure localhost/sagemaker-serving:test
    uv run python bench/image_size.py --build    # build it first (Debian base, podman)

The added layers are what every SageMaker instance pulls on top of a base it may
already have cached, so they are the figure to keep small. Target: under 500 MB
(10^6 bytes, the unit podman and docker print). Sizes are uncompressed, as the
engine stores them. Exit status 1 when the target is missed, 2 when the image
cannot be measured.

It also says why: the installed size of each Python distribution in the
image's venv, measured inside the image, with the reason each large one is
there. The target was 350 MB until polars came in (+~188 MB: 276 -> 464 MB
added on the Debian base): it parses numeric CSV 1.3-2.6x faster per core than
pandas did and reads and writes Parquet (`bench/csv_decode.py`). An instance
pulls the image once; it decodes CSV for every request of the job, so the
extra ~1-2 s of pull pays for itself within the first minutes of a job.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType


def _load_engine() -> ModuleType:
    """tests/image/engine.py by path: a dependency installs its own top-level `tests`."""
    path = Path(__file__).resolve().parent.parent / "tests" / "image" / "engine.py"
    spec = importlib.util.spec_from_file_location("image_test_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_engine = _load_engine()
REPO_ROOT = _engine.REPO_ROOT
SERVING_IMAGE = _engine.SERVING_IMAGE
DebianBase = _engine.DebianBase
Engine = _engine.Engine
EngineError = _engine.EngineError
EngineUnavailableError = _engine.EngineUnavailableError
build_image = _engine.build_image
ensure_debian_base = _engine.ensure_debian_base
find_engine = _engine.find_engine

TARGET_ADDED_MB = 500.0
# Why the large distributions are in the image (shown next to their sizes).
WHY = {
    "polars-runtime-32": "CSV decode (1.3-2.6x pandas per core) and Parquet in/out",
    "polars": "Python layer of polars-runtime-32",
    "scipy": "required by scikit-learn",
    "scikit-learn": "the models",
    "numpy": "arrays for everything",
    "pandas": "DataFrame models, CSV error diagnosis",
    "uvloop": "event loop of the HTTP server",
}
# Run inside the image: bytes per distribution in the venv's site-packages.
_SIZES_SCRIPT = """
import importlib.metadata as m, json, os, sys
site = next(p for p in sys.path if p.endswith("site-packages"))
owner = {}
for dist in m.distributions():
    for file in dist.files or []:
        owner.setdefault(file.parts[0], dist.metadata["Name"])
sizes = {}
for entry in os.listdir(site):
    path = os.path.join(site, entry)
    total = os.lstat(path).st_size
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    name = owner.get(entry, entry)
    sizes[name] = sizes.get(name, 0) + total
print(json.dumps(sizes))
"""
MB = 1_000_000
MIB = 1024 * 1024


def _fmt(size: int) -> str:
    return f"{size / MB:8.1f} MB ({size / MIB:6.1f} MiB)"


def added_layers(engine: Engine, image: str, base: str) -> tuple[list[dict], list[dict]]:
    """(added, base) history entries: the image's history is the base's plus what it adds.

    Engines number history newest first, so the base's entries are the image's
    last ones; they are checked to match, so a wrong --base is reported, not guessed.
    """
    image_history = engine.image_history(image)
    base_history = engine.image_history(base)
    split = len(image_history) - len(base_history)
    inherited = image_history[split:]
    if split < 0 or [h["created_by"] for h in inherited] != [h["created_by"] for h in base_history]:
        raise EngineError(f"{image} is not built on {base}: their histories differ")
    return image_history[:split], inherited


def package_sizes(engine: Engine, image: str) -> dict[str, int]:
    """Installed bytes per distribution, measured inside the image."""
    import json

    proc = engine.cmd(
        "run",
        "--rm",
        "--network=none",
        *engine.run_flags,
        "--entrypoint",
        "/opt/venv/bin/python",
        image,
        "-c",
        _SIZES_SCRIPT,
        timeout=300,
    )
    return {str(k): int(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=SERVING_IMAGE, help=f"default {SERVING_IMAGE}")
    parser.add_argument(
        "--base",
        default=DebianBase().tag,
        help="the BASE_IMAGE it was built from (default: the debootstrap base)",
    )
    parser.add_argument(
        "--build",
        action="store_true",
        help="build the Debian base (if not cached) and the image from container/ first",
    )
    args = parser.parse_args(argv)
    try:
        engine = find_engine()
        if args.build:
            log = Path(tempfile.mkdtemp(prefix="image-size-")) / "build.log"
            base_seconds = ensure_debian_base(engine, DebianBase(), log)
            build_seconds = build_image(
                engine,
                context=REPO_ROOT / "container",
                dockerfile=REPO_ROOT / "container" / "Dockerfile",
                tag=args.image,
                build_args={"BASE_IMAGE": args.base},
                log=log,
            )
            base_note = "cached" if base_seconds is None else f"built in {base_seconds:.1f} s"
            image_note = (
                "unchanged, reused" if build_seconds is None else f"built in {build_seconds:.1f} s"
            )
            print(f"base {args.base}: {base_note}; image {image_note} (log {log})")
        info = engine.image_inspect(args.image)
        base_info = engine.image_inspect(args.base)
        if info is None or base_info is None:
            missing = args.image if info is None else args.base
            print(f"image_size: {missing} is not in {engine.name}'s storage; pass --build")
            return 2
        added, _ = added_layers(engine, args.image, args.base)
    except (EngineUnavailableError, EngineError) as exc:
        print(f"image_size: {exc}", file=sys.stderr)
        return 2

    total = int(info.get("Size") or 0)
    base_size = int(base_info.get("Size") or 0)
    added_size = sum(layer["size"] for layer in added)
    print(f"engine           {engine.name}")
    print(f"image            {args.image}  {info['Id'][:12]}")
    print(f"image size      {_fmt(total)}")
    print(f"base size       {_fmt(base_size)}  {args.base}")
    print(f"added layers    {_fmt(added_size)}  ({len(added)} history entries)")
    for layer in added:
        if layer["size"]:
            step = " ".join(layer["created_by"].split())
            print(f"  {_fmt(layer['size'])}  {step[:90]}")
    try:
        sizes = package_sizes(engine, args.image)
    except EngineError as exc:
        print(f"per-package sizes unavailable: {exc}")
    else:
        print("largest Python distributions in the venv (why they are there):")
        for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:10]:
            print(f"  {_fmt(size)}  {name:<20} {WHY.get(name.lower(), '')}")
        print(f"  {_fmt(sum(sizes.values()))}  all {len(sizes)} site-packages entries")
    verdict = "OK" if added_size / MB < TARGET_ADDED_MB else "OVER TARGET"
    print(f"target          added layers < {TARGET_ADDED_MB:.0f} MB: {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
