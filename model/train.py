"""Fit the model (StandardScaler + LogisticRegression), evaluate it, describe it.

Scaling first makes the lbfgs solver converge quickly and the coefficients
comparable; both steps are deterministic, so the same data gives the same model
bytes (the archive's hash is checked by the tests).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

CREATED_BY = "model.train (sagemaker-batch-transform)"


@dataclass(frozen=True)
class TrainedModel:
    """The fitted pipeline and its evaluation metrics."""

    pipeline: Pipeline
    metrics: dict[str, float | int]

    @property
    def feature_count(self) -> int:
        """Features the model expects per row."""
        return int(self.pipeline.n_features_in_)

    @property
    def class_labels(self) -> list[Any]:
        """Class labels in predict_proba column order (plain Python values)."""
        return list(self.pipeline.classes_.tolist())


def build_pipeline(*, c: float = 1.0, max_iter: int = 1000) -> Pipeline:
    """The untrained estimator."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=c, max_iter=max_iter)),
        ]
    )


def evaluate(pipeline: Pipeline, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC AUC (one-vs-rest macro average for more than two classes)."""
    predicted = pipeline.predict(x)
    probabilities = pipeline.predict_proba(x)
    if probabilities.shape[1] == 2:
        auc = roc_auc_score(y, probabilities[:, 1])
    else:
        auc = roc_auc_score(y, probabilities, multi_class="ovr", average="macro")
    return {"accuracy": float(accuracy_score(y, predicted)), "roc_auc": float(auc)}


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    *,
    c: float = 1.0,
) -> TrainedModel:
    """Fit on the training split, measure on the evaluation split."""
    pipeline = build_pipeline(c=c)
    pipeline.fit(x_train, y_train)
    metrics: dict[str, float | int] = {
        f"eval_{name}": value for name, value in evaluate(pipeline, x_eval, y_eval).items()
    }
    metrics["train_rows"] = len(x_train)
    metrics["eval_rows"] = len(x_eval)
    return TrainedModel(pipeline=pipeline, metrics=metrics)


def library_versions() -> dict[str, str]:
    """Versions the model was built with (the server can warn on a mismatch)."""
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def build_metadata(trained: TrainedModel, *, seed: int | None = None) -> dict[str, Any]:
    """metadata.json for the archive (no timestamps: the archive stays reproducible)."""
    metadata: dict[str, Any] = {
        "feature_count": trained.feature_count,
        "class_labels": trained.class_labels,
        "feature_names": None,
        "versions": library_versions(),
        "metrics": {
            key: round(value, 6) if isinstance(value, float) else value
            for key, value in trained.metrics.items()
        },
        "created_by": CREATED_BY,
    }
    if seed is not None:
        metadata["seed"] = seed
    return metadata
