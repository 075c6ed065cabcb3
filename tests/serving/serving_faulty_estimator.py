"""A model that misbehaves on request, pickled by reference for the fault tests.

The `serve` subprocess imports it from this directory (the tests put it on
PYTHONPATH), so it must stay a top-level module with no test imports.
What a request's first cell asks for:

* `666`: the worker kills itself with SIGKILL (a segfault or an OOM kill);
* `777`: the worker aborts (SIGABRT, as a C library's assertion does);
* `555`: sleep the number of seconds in the second cell, then answer;
* anything else: answer each row with the worker's process id.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np


class FaultyRegressor:
    """Answers with the worker's pid; crashes or dawdles when the first cell says so."""

    n_features_in_ = 2

    def predict(self, x):
        x = np.asarray(x, dtype=float)
        first = x[0, 0]
        if first == 666:
            os.kill(os.getpid(), signal.SIGKILL)
        if first == 777:
            os.abort()
        if first == 555:
            time.sleep(x[0, 1])
        return np.full(len(x), os.getpid(), dtype=np.int64)
