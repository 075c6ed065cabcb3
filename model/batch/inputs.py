"""The input files of a transform and the output directory they go to.

Every file under the input path (recursively), in a stable order, each with the
path relative to the input root that names its ``.out``; the output directory is
checked for writability before any work starts. Whole-file formats (Parquet, NPY)
are recognised by their first bytes, so a directory of them can be sent as they
are (``sniff_content_type``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.errors import UserError

# Magic numbers: Parquet files start (and end) with b"PAR1" (Apache Parquet format
# spec); .npy files with b"\x93NUMPY" (numpy's NEP 1 format description).
_MAGIC = {b"PAR1": "application/x-parquet", b"\x93NUMPY": "application/x-npy"}


class InputError(UserError):
    """The input path is missing or holds nothing to transform."""


class OutputError(UserError):
    """The output directory cannot be used."""


@dataclass(frozen=True)
class InputFile:
    """One input object: its path and its name relative to the input root."""

    path: Path
    relative: str
    size: int

    @property
    def output_name(self) -> str:
        """``<relative path>.out``, as Batch Transform names output objects."""
        return f"{self.relative}.out"


def discover_inputs(input_path: Path, output_dir: Path | None = None) -> list[InputFile]:
    """Every file under ``input_path`` (or the file itself), sorted by relative path.

    Files inside ``output_dir`` are skipped when it lies within the input tree, so a
    second run never reads the first run's ``.out`` files as input.
    """
    if not input_path.exists():
        raise InputError(f"input {input_path} does not exist; pass a directory of input files")
    if input_path.is_file():
        return [InputFile(input_path, input_path.name, input_path.stat().st_size)]
    if not input_path.is_dir():
        raise InputError(f"input {input_path} is neither a file nor a directory")
    root = input_path.resolve()
    skip = output_dir.resolve() if output_dir is not None else None
    if skip == root:
        raise InputError(
            f"the output directory is the input directory ({input_path}); the .out files "
            "would become input of the next run. Choose another output directory"
        )
    found: list[InputFile] = []
    for directory, subdirs, files in os.walk(root, onerror=_raise_walk_error):
        here = Path(directory)
        if skip is not None:
            subdirs[:] = [d for d in subdirs if here / d != skip]
        subdirs.sort()
        for name in files:
            path = here / name
            if not path.is_file():
                continue  # broken symlink, socket, ...
            found.append(InputFile(path, path.relative_to(root).as_posix(), path.stat().st_size))
    if not found:
        raise InputError(f"input directory {input_path} holds no files to transform")
    found.sort(key=lambda f: f.relative)
    return found


def _raise_walk_error(error: OSError) -> None:
    raise InputError(f"cannot read input directory {error.filename}: {error.strerror}")


def prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove it is writable, before any work starts."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=output_dir)
        os.close(fd)
        Path(probe).unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"output directory {output_dir} is not writable ({reason}); choose another one"
        ) from None


def sniff_content_type(files: list[InputFile]) -> str | None:
    """``application/x-parquet`` / ``application/x-npy`` when every non-empty file is
    one; None when none is (text); UserError for a mix SageMaker could not run as one job."""
    kinds: dict[str, str] = {}
    for source in files:
        try:
            with source.path.open("rb") as stream:
                head = stream.read(8)
        except OSError:
            continue  # reported when the file is read
        if not head:
            continue
        kind = next((t for magic, t in _MAGIC.items() if head.startswith(magic)), "text")
        kinds.setdefault(kind, source.relative)
    if len(kinds) > 1:
        found = ", ".join(f"{name} is {kind}" for kind, name in sorted(kinds.items()))
        raise InputError(
            f"the input mixes formats ({found}); a Batch Transform job has one ContentType: "
            "put each format in its own input directory"
        )
    kind = next(iter(kinds), "text")
    return None if kind == "text" else kind
