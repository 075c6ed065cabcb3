"""Training: the pipeline, its metrics and the metadata the server reads."""

from __future__ import annotations

from model.data import generate_dataset
from model.train import build_metadata, train_model


def test_trains_a_scaled_logistic_regression_with_useful_metrics():
    data = generate_dataset(rows=3000, features=8, seed=0)
    trained = train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)
    assert [name for name, _ in trained.pipeline.steps] == ["scale", "classify"]
    assert trained.metrics["eval_accuracy"] > 0.8
    assert trained.metrics["eval_roc_auc"] > 0.85
    assert trained.metrics["train_rows"] == 1800
    assert trained.feature_count == 8
    assert trained.class_labels == [0, 1]


def test_metadata_follows_the_artifact_contract():
    data = generate_dataset(rows=2000, features=5, class_balance=(0.2, 0.3, 0.5), seed=2)
    trained = train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)
    metadata = build_metadata(trained, seed=2)
    assert metadata["feature_count"] == 5
    assert metadata["class_labels"] == [0, 1, 2]
    assert metadata["feature_names"] is None
    assert set(metadata["versions"]) == {"python", "scikit-learn", "numpy", "joblib"}
    assert 0 < metadata["metrics"]["eval_roc_auc"] <= 1
    assert metadata["created_by"].startswith("model.train")
