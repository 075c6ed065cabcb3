"""An estimator that takes its time, pickled by reference for the shutdown test.

The `serve` subprocess imports it from this directory (the test puts it on
PYTHONPATH), so it must stay a top-level module with no test imports.
"""

from __future__ import annotations

import time

import numpy as np


class SlowClassifier:
    """Predicts 1 for every row after sleeping `seconds`: a request stays in flight."""

    def __init__(self, seconds: float, n_features: int) -> None:
        self.seconds = seconds
        self.n_features_in_ = n_features
        self.classes_ = np.array([0, 1])

    def predict(self, x):
        if len(x) > 1:  # warm-up sends one row; real test requests send more
            time.sleep(self.seconds)
        return np.ones(len(x), dtype=int)
