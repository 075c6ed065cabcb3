"""Training: the pipeline, its metrics and the metadata the server reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder

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


def table_splits(seed: int = 0, rows: int = 1500):
    """A mixed-type DataFrame: the signal is in a number and in a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(45, 12, rows),
            "city": rng.choice(["Paris", "Lyon", "Nice"], rows).astype(object),
            "plan": rng.choice(["basic", "pro"], rows).astype(object),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "age"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "city"] = np.nan
    score = (
        np.nan_to_num(frame["age"].to_numpy(), nan=45) / 12 - 3.75 + (frame["plan"] == "pro") * 2
    )
    labels = np.where(score + rng.normal(0, 0.3, rows) > 1, "stay", "leave").astype(object)
    cut = rows * 2 // 3
    return frame[:cut], labels[:cut], frame[cut:].reset_index(drop=True), labels[cut:]


def test_a_dataframe_gets_a_column_transformer_by_dtype():
    x_train, y_train, x_eval, y_eval = table_splits()
    trained = train_model(x_train, y_train, x_eval, y_eval)
    prepare = trained.pipeline.named_steps["prepare"]
    assert isinstance(prepare, ColumnTransformer)
    kinds = {name: columns for name, _, columns in prepare.transformers_ if name != "remainder"}
    assert kinds == {"numeric": ["age"], "categorical": ["city", "plan"]}
    numeric, categorical = (
        prepare.named_transformers_["numeric"],
        prepare.named_transformers_["categorical"],
    )
    assert [type(step).__name__ for _, step in numeric.steps] == ["SimpleImputer", "StandardScaler"]
    encoder = categorical.named_steps["encode"]
    assert isinstance(encoder, OneHotEncoder) and encoder.handle_unknown == "ignore"
    assert list(trained.pipeline.feature_names_in_) == ["age", "city", "plan"]
    assert trained.class_labels == ["leave", "stay"]
    assert trained.metrics["eval_accuracy"] > 0.85 and trained.metrics["eval_roc_auc"] > 0.9
    # a city never seen in training, and missing values, still predict
    unseen = pd.DataFrame(
        {"age": [np.nan, 50.0], "city": ["Berlin", np.nan], "plan": ["pro", "basic"]}
    )
    assert len(trained.pipeline.predict(unseen)) == 2


def test_a_tables_metadata_names_its_columns_and_dtypes():
    x_train, y_train, x_eval, y_eval = table_splits()
    metadata = build_metadata(train_model(x_train, y_train, x_eval, y_eval), seed=4, target="churn")
    assert metadata["feature_names"] == ["age", "city", "plan"]
    # as pandas named them at fit time ("str" or "object" for text, by pandas version)
    assert metadata["feature_dtypes"] == {n: str(d) for n, d in x_train.dtypes.items()}
    assert metadata["feature_dtypes"]["age"] == "float64"
    assert metadata["class_labels"] == ["leave", "stay"]
    assert metadata["target"] == "churn" and metadata["seed"] == 4


def test_multiclass_tables_and_evaluation_without_a_class_in_it():
    x_train, _, x_eval, _ = table_splits()
    y_train = np.resize(np.array(["a", "b", "c"], dtype=object), len(x_train))
    y_eval = np.resize(np.array(["a", "b"], dtype=object), len(x_eval))  # no "c" to evaluate
    trained = train_model(x_train, y_train, x_eval, y_eval)
    assert trained.class_labels == ["a", "b", "c"]
    assert "eval_accuracy" in trained.metrics
    assert "eval_roc_auc" not in trained.metrics  # undefined here: left out, not NaN
