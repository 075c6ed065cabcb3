"""``model.tar.gz``: written reproducibly, unpacked safely, explained clearly when wrong.

The archive SageMaker unpacks into ``/opt/ml/model`` holds ``model.joblib`` and
``metadata.json`` at its root (the project's artifact contract). Writing it is
deterministic: the same model bytes and metadata give the same archive bytes
(sorted members, fixed owner, mode and timestamp, gzip header without name or
time), so a seeded training run can be checked by hash.

Unpacking accepts regular files and directories only, inside the target directory
(no absolute paths, ``..``, links or devices), and every problem a user can meet
(missing file, not a gzip tar, no ``model.joblib``) is an ``ArtifactError`` with a
one-line message. This module imports only the standard library, except joblib
when a model object is (de)serialised.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from model.errors import UserError
from model.storage import disk_full, is_disk_full, write_atomic

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
# What a fitted model saved by joblib.dump or pickle.dump is usually called.
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav")
# 1980-01-01, the usual reproducible-build epoch (zip cannot go lower); override
# with SOURCE_DATE_EPOCH like other reproducible tooling.
_DEFAULT_EPOCH = 315532800


class ArtifactError(UserError):
    """The model archive is missing, unreadable or not laid out as expected."""


def _epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else _DEFAULT_EPOCH


def dump_model(model: Any) -> bytes:
    """The joblib serialisation of ``model`` (what goes into the archive)."""
    import joblib

    buffer = io.BytesIO()
    with _stock_pickler():
        joblib.dump(model, buffer)
    return buffer.getvalue()


def _from_dill(function: Any) -> bool:
    return str(getattr(function, "__module__", "")).startswith("dill")


@contextlib.contextmanager
def _stock_pickler() -> Iterator[None]:
    """Pickle's own dispatch table for joblib while it dumps.

    Importing dill (Pulumi's Automation API does) extends pickle's pure-Python pickler,
    and joblib copies that table when it is imported: a ColumnTransformer dumped then
    needs dill to load, and the serving image has none. dill's documented switch
    gives pickle's own table back; joblib's copy is swapped for it during the dump.
    """
    from joblib.numpy_pickle import NumpyPickler

    dill = sys.modules.get("dill")
    table = NumpyPickler.dispatch
    if dill is None or not any(map(_from_dill, table.values())):
        yield
        return
    extended = any(map(_from_dill, pickle._Pickler.dispatch.values()))
    dill.extend(False)
    NumpyPickler.dispatch = dict(pickle._Pickler.dispatch)
    try:
        yield
    finally:
        NumpyPickler.dispatch = table
        if extended:
            dill.extend(True)


def metadata_bytes(metadata: dict[str, Any]) -> bytes:
    """metadata.json exactly as archived: sorted keys, two-space indent, final newline."""
    return (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_archive_bytes(members: dict[str, bytes], path: Path) -> Path:
    """Write a reproducible ``.tar.gz`` of ``members`` (name -> bytes) atomically."""
    mtime = _epoch()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary file + rename; a full disk is a one-line DiskFullError (a UserError).
    return write_atomic(path, compressed.getvalue(), mode=0o644)


def describe_columns(frame: Any) -> dict[str, Any]:
    """metadata.json entries for a model fitted on the pandas DataFrame ``frame``.

    ``feature_names`` in order, ``feature_dtypes`` (pandas dtype names) and, for
    ``category`` columns, ``feature_categories``: the server builds each request's
    DataFrame from them (numbers, strings or categories, as at fit time).
    """
    dtypes = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    described: dict[str, Any] = {"feature_names": list(dtypes), "feature_dtypes": dtypes}
    categories = {
        str(name): frame[name].cat.categories.tolist()
        for name, dtype in frame.dtypes.items()
        if str(dtype) == "category"
    }
    if categories:
        described["feature_categories"] = categories
    return described


def write_model_archive(model: Any, metadata: dict[str, Any], path: Path) -> Path:
    """Package a fitted model and its metadata as ``path`` (``model.tar.gz``).

    A model fitted on a DataFrame gets its column names in ``feature_names``
    when the metadata has none (``describe_columns`` adds the dtypes too).
    """
    names = getattr(model, "feature_names_in_", None)
    if names is not None and metadata.get("feature_names") is None:
        metadata = {**metadata, "feature_names": [str(name) for name in names]}
    return write_archive_bytes(
        {MODEL_FILE: dump_model(model), METADATA_FILE: metadata_bytes(metadata)}, path
    )


CODE_DIR = "code"


def pack_model(
    model: Any,
    path: Path,
    *,
    code_dir: Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Package ``model.tar.gz`` with the user's own inference code in ``code/``.

    ``model`` is a fitted estimator, or the path of an existing ``model.joblib``
    (packed byte for byte). Every regular file under ``code_dir`` (e.g.
    ``inference.py`` with AWS's ``model_fn`` / ``input_fn`` / ``predict_fn`` /
    ``output_fn`` / ``transform_fn``, helper modules, ``requirements.txt``) goes
    under ``code/``, which SageMaker unpacks to ``/opt/ml/model/code/`` where
    ``serve`` finds ``inference.py``; caches (``__pycache__``, ``*.pyc``) are left
    out. Reproducible like every archive here; ``metadata`` is optional.
    """
    if isinstance(model, str | Path):
        source = Path(model)
        try:
            members = {MODEL_FILE: source.read_bytes()}
        except OSError as error:
            raise ArtifactError(f"cannot read the model {source}: {_reason(error)}") from None
    else:
        members = {MODEL_FILE: dump_model(model)}
    if metadata is not None:
        members[METADATA_FILE] = metadata_bytes(metadata)
    if code_dir is not None:
        members.update(_code_members(Path(code_dir)))
    return write_archive_bytes(members, path)


def _code_members(code_dir: Path) -> dict[str, bytes]:
    if not code_dir.is_dir():
        raise ArtifactError(f"code directory {code_dir} does not exist or is not a directory")
    members: dict[str, bytes] = {}
    for file in sorted(code_dir.rglob("*")):
        relative = file.relative_to(code_dir)
        if "__pycache__" in relative.parts or file.suffix == ".pyc" or not file.is_file():
            continue
        members[str(PurePosixPath(CODE_DIR, *relative.parts))] = file.read_bytes()
    if not any(name.endswith(".py") for name in members):
        raise ArtifactError(f"code directory {code_dir} holds no .py file (inference.py)")
    return members


def _open(path: Path) -> tarfile.TarFile:
    if not path.exists():
        raise ArtifactError(f"model archive {path} does not exist; pass the model.tar.gz to use")
    if not path.is_file():
        raise ArtifactError(f"model archive {path} is not a file")
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ArtifactError(
            f"model archive {path} is not a readable .tar.gz ({_reason(error)}); "
            "it may be truncated or corrupt: package the model again"
        ) from None


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0].rstrip(":") if str(error).strip() else ""
    if text == "file could not be opened successfully":
        return "neither gzip nor tar data"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative name, or ArtifactError if it escapes the root."""
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise ArtifactError(f"model archive member {name!r} points outside the model directory")
    return str(PurePosixPath(*[part for part in pure.parts if part != "."]) or ".")


def list_members(path: Path) -> list[str]:
    """Names of the regular files in the archive (normalised, e.g. ``model.joblib``)."""
    with _open(path) as tar:
        try:
            return [_member_name(m) for m in tar.getmembers() if m.isfile()]
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise ArtifactError(
                f"model archive {path} is corrupt ({_reason(error)}); package the model again"
            ) from None


def unpack_model_archive(path: Path, destination: Path) -> Path:
    """Extract ``path`` into ``destination`` safely; check that model.joblib is at its root."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    names: list[str] = []
    writing: tuple[Path, int] | None = None  # the member being written, for a full disk
    with _open(path) as tar:
        try:
            for member in tar:
                name = _member_name(member)
                if member.isdir():
                    (root / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ArtifactError(
                        f"model archive {path} holds a {kind} ({member.name}); only regular "
                        "files are accepted"
                    )
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                writing = (target, member.size)
                with source, target.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                writing = None
                names.append(name)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise ArtifactError(
                f"model archive {path} is corrupt ({_reason(error)}); package the model again"
            ) from None
        except OSError as error:
            if is_disk_full(error):
                if writing is not None:
                    writing[0].unlink(missing_ok=True)  # no half-written member is left
                raise disk_full(destination, writing[1] if writing else 0) from None
            if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
                raise ArtifactError(f"cannot unpack {path} into {destination}: {error}") from None
            raise ArtifactError(
                f"model archive {path} is corrupt ({_reason(error)}); package the model again"
            ) from None
    if MODEL_FILE not in names:
        raise ArtifactError(_missing_model_message(path, names))
    return destination


def _missing_model_message(path: Path, names: list[str]) -> str:
    """Why an archive without ``model.joblib`` at its root fails, and the fix for it."""
    found = ", ".join(sorted(names)[:5]) or "nothing"
    head = f"model archive {path} has no {MODEL_FILE} at its root (found: {found}); "
    if any(PurePosixPath(name).name == MODEL_FILE for name in names):
        return head + (
            f"SageMaker unpacks the archive into /opt/ml/model, so {MODEL_FILE} must not be "
            "inside a folder: pack it from inside that folder (tar -C FOLDER -czf model.tar.gz .)"
        )
    saved = [n for n in names if "/" not in n and PurePosixPath(n).suffix in MODEL_SUFFIXES]
    if saved:
        return head + (
            f"serve loads the model from a file named {MODEL_FILE} (joblib.load also reads "
            f"pickles): rename {saved[0]} to {MODEL_FILE} and pack the archive again"
        )
    return head + f"save the fitted model with joblib.dump(model, '{MODEL_FILE}') and pack that"


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """metadata.json of an unpacked model (empty when it has none)."""
    path = model_dir / METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path} is not readable JSON ({_reason(error)})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


def load_model_archive(path: Path) -> tuple[Any, dict[str, Any]]:
    """The fitted model and its metadata from ``path`` (unpacked into a temporary dir)."""
    import joblib

    with tempfile.TemporaryDirectory(prefix="model-") as temp:
        model_dir = unpack_model_archive(path, Path(temp))
        metadata = read_metadata(model_dir)
        try:
            # Our own artifact, trusted like the code that made it.
            model = joblib.load(model_dir / MODEL_FILE)
        except Exception as error:
            raise ArtifactError(
                f"{MODEL_FILE} in {path} cannot be loaded ({_reason(error)})"
            ) from None
    return model, metadata
