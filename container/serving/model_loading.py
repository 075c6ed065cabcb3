"""Load `model.joblib` and the optional `metadata.json` from the model directory.

Runs once, in the `serve` parent before workers are forked, so every worker
shares the loaded model (copy-on-write) and no request ever waits for a load.
Anything wrong with the artifact becomes a `StartupError` that names the file
and the problem, because a server that cannot predict must never answer /ping.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.errors import StartupError
from serving.schema import InputSchema, input_schema

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"

log = logging.getLogger("serving")


@dataclass(frozen=True)
class LoadedModel:
    """A fitted estimator plus what the server needs to validate requests for it."""

    estimator: Any
    path: Path
    # Columns every row must have; None when neither metadata nor the model says.
    feature_count: int | None
    # Names the estimator was fitted with (it was fitted on a DataFrame): rows are
    # handed to it as a DataFrame with these columns so it does not warn per call.
    feature_names_in: tuple[str, ...] | None
    # `classes_` of a classifier, in the order of predict_proba's columns.
    classes: tuple[Any, ...] | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Column names and kinds when known (`serving.schema`); None for plain-array models.
    schema: InputSchema | None = None

    @property
    def has_predict_proba(self) -> bool:
        # Pipelines expose predict_proba only when their last step has it.
        return callable(getattr(self.estimator, "predict_proba", None))

    def describe(self) -> str:
        """Short human name, e.g. `Pipeline(StandardScaler -> LogisticRegression)`."""
        steps = getattr(self.estimator, "steps", None)
        name = type(self.estimator).__name__
        if isinstance(steps, list):
            inner = " -> ".join(type(step).__name__ for _, step in steps)
            return f"{name}({inner})"
        return name


def load_model(model_dir: str | Path) -> LoadedModel:
    """Load and check the model in `model_dir`; raise `StartupError` naming any problem."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise StartupError(
            f"model directory {directory} does not exist or is not a directory "
            f"(set MODEL_DIR to the directory that holds {MODEL_FILE})"
        )
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise StartupError(
            f"{model_path} not found (the model directory must hold {MODEL_FILE} "
            f"at its root, as packed in model.tar.gz)"
        )
    metadata = _read_metadata(directory / METADATA_FILE)
    estimator = _unpickle(model_path)
    if not callable(getattr(estimator, "predict", None)):
        raise StartupError(
            f"{model_path} holds a {type(estimator).__name__}, not a fitted estimator "
            f"with predict()"
        )
    check_fitted(estimator, model_path)
    return loaded_model(estimator, model_path, metadata)


def loaded_model(
    estimator: Any, model_path: Path, metadata: Mapping[str, Any] | None = None
) -> LoadedModel:
    """Wrap an estimator already in memory (e.g. from a user's `model_fn`) for serving.

    `model_path` is what messages name as the model's origin.
    """
    metadata = dict(metadata or {})
    feature_count = _feature_count(estimator, metadata, model_path)
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    return LoadedModel(
        estimator=estimator,
        path=model_path,
        feature_count=feature_count,
        feature_names_in=tuple(str(n) for n in names) if names is not None else None,
        classes=tuple(classes.tolist() if hasattr(classes, "tolist") else classes)
        if classes is not None
        else None,
        metadata=metadata,
        schema=input_schema(estimator, metadata, str(model_path.parent / METADATA_FILE)),
    )


def check_fitted(estimator: Any, model_path: Path) -> None:
    """Refuse an unfitted scikit-learn model at start-up, not with a 400 per request.

    Uses scikit-learn's own test (`check_is_fitted`: fitted attributes ending in
    `_`, or `__sklearn_is_fitted__`); objects without `fit` are not estimators
    it can judge and pass.
    """
    if not callable(getattr(estimator, "fit", None)):
        return
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise StartupError(
            f"{model_path} holds an unfitted {type(estimator).__name__}: call fit() before "
            f"saving it (a custom estimator can define __sklearn_is_fitted__)"
        ) from None
    except Exception:  # not an estimator scikit-learn can judge
        return


def _unpickle(model_path: Path) -> Any:
    import joblib

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # The artifact is the operator's own model, trusted like the image itself.
            estimator = joblib.load(model_path)
        except MemoryError:
            raise StartupError(f"{model_path} is too large to load into memory") from None
        except OSError as exc:
            raise StartupError(f"cannot read {model_path}: {exc.strerror or exc}") from None
        except Exception as exc:
            # Corrupt, truncated or built with an incompatible library: unpickling
            # raises anything from EOFError to ModuleNotFoundError.
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise StartupError(
                f"cannot load {model_path}: {type(exc).__name__}: {detail} "
                f"(is it a joblib dump of a scikit-learn model, made with compatible versions?)"
            ) from None
    for warning in caught:
        log.warning("loading %s: %s", model_path, str(warning.message).splitlines()[0])
    return estimator


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StartupError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StartupError(f"{path} must hold a JSON object, found {type(data).__name__}")
    count = data.get("feature_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise StartupError(f"{path}: feature_count must be a positive integer, got {count!r}")
    return data


def _feature_count(estimator: Any, metadata: Mapping[str, Any], model_path: Path) -> int | None:
    declared = metadata.get("feature_count")
    fitted = getattr(estimator, "n_features_in_", None)
    fitted = int(fitted) if fitted is not None else None
    if declared is not None and fitted is not None and declared != fitted:
        raise StartupError(
            f"{model_path.parent / METADATA_FILE} says feature_count={declared} but "
            f"{model_path} was fitted on {fitted} features; repackage the model"
        )
    return declared if declared is not None else fitted
