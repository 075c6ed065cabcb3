"""Fit the model (StandardScaler + LogisticRegression), evaluate it, describe it.

Scaling first makes the lbfgs solver converge quickly and the coefficients
comparable; both steps are deterministic, so the same data gives the same model
bytes (the archive's hash is checked by the tests).

A user's table (a DataFrame with named, typed columns) gets a ColumnTransformer
built from the column types instead: numbers are imputed (median) and scaled,
text and categories imputed (a constant "missing" category) and one-hot encoded,
ignoring categories never seen in training. Fitted on the DataFrame, the pipeline
keeps ``feature_names_in_``; the metadata also records each column's dtype.
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from model.artifact import describe_columns

CREATED_BY = "model.train (sagemaker-batch-transform)"


@dataclass(frozen=True)
class TrainedModel:
    """The fitted pipeline and its evaluation metrics."""

    pipeline: Pipeline
    metrics: dict[str, float | int]
    # metadata.json's feature_names / feature_dtypes (model.artifact.describe_columns),
    # when fitted on a DataFrame.
    columns: dict[str, Any] | None = None

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


MISSING_CATEGORY = "missing"


def build_table_pipeline(
    features: pd.DataFrame, *, c: float = 1.0, max_iter: int = 1000
) -> Pipeline:
    """The untrained pipeline for a DataFrame: its numeric and other columns by dtype."""
    numeric = [name for name in features.columns if pd.api.types.is_numeric_dtype(features[name])]
    categorical = [name for name in features.columns if name not in numeric]
    parts = []
    if numeric:
        parts.append(
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            )
        )
    if categorical:
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
                        ),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("prepare", ColumnTransformer(parts)),
            ("classify", LogisticRegression(C=c, max_iter=max_iter)),
        ]
    )


def evaluate(pipeline: Pipeline, x: Any, y: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC AUC (one-vs-rest macro average for more than two classes).

    ROC AUC is left out when the evaluation rows cannot define it (a class missing
    from them, which a small table's split can cause).
    """
    predicted = pipeline.predict(x)
    metrics = {"accuracy": float(accuracy_score(y, predicted))}
    probabilities = pipeline.predict_proba(x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined: left out below
            if probabilities.shape[1] == 2:
                auc = roc_auc_score(y, probabilities[:, 1])
            else:
                auc = roc_auc_score(
                    y, probabilities, multi_class="ovr", average="macro", labels=pipeline.classes_
                )
    except ValueError:
        return metrics
    if np.isfinite(auc):
        metrics["roc_auc"] = float(auc)
    return metrics


def train_model(
    x_train: Any,
    y_train: np.ndarray,
    x_eval: Any,
    y_eval: np.ndarray,
    *,
    c: float = 1.0,
) -> TrainedModel:
    """Fit on the training split, measure on the evaluation split.

    ``x_train`` is a numpy array (generated data) or a DataFrame (a user's table,
    which gets ``build_table_pipeline``).
    """
    table = isinstance(x_train, pd.DataFrame)
    pipeline = build_table_pipeline(x_train, c=c) if table else build_pipeline(c=c)
    pipeline.fit(x_train, y_train)
    metrics: dict[str, float | int] = {
        f"eval_{name}": value for name, value in evaluate(pipeline, x_eval, y_eval).items()
    }
    metrics["train_rows"] = len(x_train)
    metrics["eval_rows"] = len(x_eval)
    columns = describe_columns(x_train) if table else None
    return TrainedModel(pipeline=pipeline, metrics=metrics, columns=columns)


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


def build_metadata(
    trained: TrainedModel, *, seed: int | None = None, target: str | None = None
) -> dict[str, Any]:
    """metadata.json for the archive (no timestamps: the archive stays reproducible).

    ``feature_names`` (in the model's column order) and ``feature_dtypes`` (name ->
    pandas dtype) are set for a model fitted on a DataFrame; ``feature_names`` is
    None otherwise.
    """
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
    if trained.columns is not None:
        metadata.update(trained.columns)
    if target is not None:
        metadata["target"] = target
    if seed is not None:
        metadata["seed"] = seed
    return metadata
