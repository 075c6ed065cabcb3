"""The user's own inference code, with the conventions of AWS's scikit-learn container.

A script written for AWS's prebuilt container runs here unchanged. It is found
the way that container finds it: `SAGEMAKER_PROGRAM` (a file name such as
`inference.py`, or a module name) in `SAGEMAKER_SUBMIT_DIRECTORY`, or, without
that directory, in `MODEL_DIR/code/` then `MODEL_DIR`; with no
`SAGEMAKER_PROGRAM`, `MODEL_DIR/code/inference.py` (what the SageMaker SDK packs
into model.tar.gz). It may define any of

    model_fn(model_dir)                  -> model     default: load model.joblib
    input_fn(input_data, content_type)   -> data      default: the server's decoders
    predict_fn(data, model)              -> prediction  default: model.predict
    output_fn(prediction, accept)        -> body      default: the server's encoders
    transform_fn(model, input_data, content_type, accept) -> body
                                         (instead of the three above: defining both is an error)

as AWS calls them: `input_data` is a `str` for exactly `text/csv` and
`application/json` requests and `bytes` otherwise; `accept` is the Accept header,
or `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT` (default `application/json`) when it is
missing or `*/*`; `output_fn` / `transform_fn` return bytes or str (sent as
`accept`), or a `(body, content_type)` tuple. A hook may take one more argument
(the inference toolkit's `context`); it gets None.

Everything runs once in the `serve` parent, before the workers fork: the module
is imported, `code/requirements.txt` checked (never installed: see
`check_requirements`), `model_fn` run. Any failure there is a `StartupError`
naming the file, the function and the error. Per request, a failure in
`input_fn` is the request's fault (400); in `predict_fn` / `output_fn` /
`transform_fn` it is a `ModelError` (500); the traceback only goes to the log.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from serving.errors import StartupError, describe_error
from serving.model_loading import LoadedModel, check_fitted, load_model, loaded_model

if TYPE_CHECKING:
    from serving.user_service import UserService

log = logging.getLogger("serving")

PROGRAM_ENV = "SAGEMAKER_PROGRAM"
SUBMIT_DIR_ENV = "SAGEMAKER_SUBMIT_DIRECTORY"
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
CODE_DIR = "code"
DEFAULT_PROGRAM = "inference.py"
REQUIREMENTS = "requirements.txt"
DEFAULT_ACCEPT = "application/json"
# Hook name -> its AWS signature (the arguments the server passes).
SIGNATURES = {
    "model_fn": ("model_dir",),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("input_data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
}


@dataclass(frozen=True)
class Hook:
    """One user function, and whether it takes the toolkit's extra `context` argument."""

    name: str
    function: Callable[..., Any]
    with_context: bool

    def __call__(self, *args: Any) -> Any:
        return self.function(*args, None) if self.with_context else self.function(*args)


@dataclass(frozen=True)
class UserCode:
    """The imported user module and the hooks it defines."""

    path: Path
    hooks: Mapping[str, Hook]

    def named(self, name: str) -> str:
        return f"{name} of {self.path}"


def find_program(model_dir: Path, env: Mapping[str, str]) -> Path | None:
    """The user's module file, or None when there is none; a named one that is missing fails."""
    program = (env.get(PROGRAM_ENV) or "").strip()
    if not program:
        default = model_dir / CODE_DIR / DEFAULT_PROGRAM
        return default if default.is_file() else None
    file_name = program if program.endswith(".py") else f"{program}.py"
    submit = (env.get(SUBMIT_DIR_ENV) or "").strip()
    if submit and "://" in submit:
        # The SDK's other way: code uploaded as sourcedir.tar.gz to S3. Downloading
        # and pip-installing it at every start is what this image avoids.
        packed = model_dir / CODE_DIR / file_name
        if packed.is_file():
            log.info("%s=%s is a URL; using %s instead", SUBMIT_DIR_ENV, submit, packed)
            return packed
        raise StartupError(
            f"{SUBMIT_DIR_ENV}={submit} is a URL: this server does not download code at "
            f"start-up; pack {file_name} into model.tar.gz under {CODE_DIR}/ "
            f"(model.artifact.pack_model) or mount it and set {SUBMIT_DIR_ENV} to its directory"
        )
    places = [Path(submit)] if submit else [model_dir / CODE_DIR, model_dir]
    for place in places:
        if (place / file_name).is_file():
            return place / file_name
    where = " or ".join(str(place) for place in places)
    via = SUBMIT_DIR_ENV if submit else "the model directory"
    raise StartupError(f"{PROGRAM_ENV}={program}: no {file_name} in {where} ({via})")


def check_requirements(path: Path) -> None:
    """Accept `code/requirements.txt` only when the image already satisfies it.

    AWS's container pip-installs it at every start. Here the model directory is
    mounted read-only, Batch Transform may run without network, and an install
    would add minutes to every cold start and make each start a different build;
    so nothing is installed at run time. Requirements the image already meets
    (e.g. `scikit-learn>=1.5`) pass; anything else stops `serve` at start-up with
    the list, and the remedy is an image built FROM this one with them installed.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read {path}: {exc}") from None
    unmet: list[str] = []
    checked = 0
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            unmet.append(f"line {number} {line!r} (pip options cannot be checked)")
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            unmet.append(f"line {number} {line!r} (not a requirement)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        checked += 1
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{requirement} (image has {installed})")
    if unmet:
        listed = ", ".join(unmet[:5]) + (f" and {len(unmet) - 5} more" if len(unmet) > 5 else "")
        raise StartupError(
            f"{path} needs {listed}; serve never installs packages at start-up: build an "
            f"image FROM this one that installs them (see README, 'Your own inference code')"
        )
    log.info("%s: all %d requirement(s) already installed", path, checked)


def import_user_code(path: Path) -> UserCode:
    """Import the module (its directory first on sys.path, as AWS does) and collect its hooks."""
    requirements = path.parent / REQUIREMENTS
    if requirements.is_file():
        check_requirements(requirements)
    name = path.stem
    directory = str(path.parent.resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)  # sibling modules and pickles referring to them
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        if not isinstance(exc, Exception):
            raise
        raise StartupError(
            f"cannot import {path}{_where(exc, path)}: {describe_error(exc)}"
        ) from None
    return UserCode(path, _collect_hooks(module, path))


def _collect_hooks(module: ModuleType, path: Path) -> dict[str, Hook]:
    hooks: dict[str, Hook] = {}
    for name, parameters in SIGNATURES.items():
        function = getattr(module, name, None)
        if function is None:
            continue
        if not callable(function):
            raise StartupError(f"{name} in {path} is a {type(function).__name__}, not a function")
        hooks[name] = Hook(name, function, _takes_context(function, name, parameters, path))
    mixed = sorted({"input_fn", "predict_fn", "output_fn"} & hooks.keys())
    if "transform_fn" in hooks and mixed:
        raise StartupError(
            f"{path} defines transform_fn and {', '.join(mixed)}: transform_fn replaces "
            f"input_fn, predict_fn and output_fn: define one or the other (as AWS's container)"
        )
    return hooks


def _takes_context(
    function: Callable[..., Any], name: str, parameters: tuple[str, ...], path: Path
) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False  # builtins and the like: call them plainly
    for extra in (0, 1):
        try:
            signature.bind(*([None] * (len(parameters) + extra)))
        except TypeError:
            continue
        return bool(extra)
    raise StartupError(
        f"{name} in {path} takes {signature}; the convention is "
        f"{name}({', '.join(parameters)}) (optionally with a context argument)"
    )


def _where(exc: BaseException, path: Path) -> str:
    """` (line N)`: the deepest line of the user's file in the traceback, if any."""
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename == str(path):
        return f" (line {exc.lineno})"
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(exc.__traceback__)
        if Path(frame.filename).resolve() == path.resolve()
    ]
    return f" (line {lines[-1]})" if lines else ""


def start_user_code(model_dir: Path, env: Mapping[str, str] | None = None) -> UserService | None:
    """Import the user's module and run its `model_fn`; None when there is no user code."""
    env = os.environ if env is None else env
    path = find_program(model_dir, env)
    if path is None:
        return None
    from serving.user_service import UserService

    code = import_user_code(path)
    model_fn = code.hooks.get("model_fn")
    if model_fn is None:
        try:
            loaded: LoadedModel | None = load_model(model_dir)
        except StartupError as err:
            raise StartupError(f"{err}; or define model_fn(model_dir) in {path}") from None
        assert loaded is not None
        model = loaded.estimator
    else:
        try:
            model = model_fn(str(model_dir))
        except Exception as exc:
            raise StartupError(
                f"model_fn in {path} failed{_where(exc, path)}: {describe_error(exc)}"
            ) from None
        loaded = None
        if callable(getattr(model, "predict", None)):
            if "predict_fn" not in code.hooks and "transform_fn" not in code.hooks:
                check_fitted(model, path)
            loaded = loaded_model(model, path)
    needs_predict = not {"predict_fn", "transform_fn"} & code.hooks.keys()
    if loaded is None and needs_predict:
        raise StartupError(
            f"model_fn in {path} returned a {type(model).__name__}, which has no predict(); "
            f"define predict_fn(input_data, model) too"
        )
    accept = (env.get(DEFAULT_ACCEPT_ENV) or "").strip() or DEFAULT_ACCEPT
    service = UserService(code, model, loaded, model_dir, default_accept=accept)
    log.info("user code %s: %s", path, ", ".join(code.hooks) or "no hooks (defaults only)")
    return service
