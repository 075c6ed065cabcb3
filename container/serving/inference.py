"""Parse, predict, format: the request-independent core of /invocations.

`transform` is what the HTTP layer runs for every request and what benchmarks
call directly as the in-process floor, so the two measure the same code. The
HTTP layer calls its two halves separately: `negotiate` before reading the
body, so a wrong Content-Type or Accept is refused without reading 100 MiB;
`run` on the body as received (chunks, not joined) after.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from serving import frames
from serving.body import Body
from serving.codecs import decode, encode
from serving.csv_codec import without_polars
from serving.errors import ModelError, RequestError, input_rejected
from serving.model_loading import LoadedModel
from serving.negotiation import Format, request_format, response_format

log = logging.getLogger("serving")

# A float matrix, or a DataFrame for models fitted on DataFrames with non-numeric columns.
Features = np.ndarray | pd.DataFrame

# How rows are named in messages: CSV and JSON Lines count lines, JSON counts rows.
_ROW_WORD = {
    Format.CSV: "line",
    Format.JSON: "row",
    Format.JSONLINES: "line",
    Format.PARQUET: "row",
    Format.NPY: "row",
}
# Warm-up answers in the text formats only: Parquet runs polars, whose threads
# would not survive the fork() that follows (see serving.csv_codec).
_WARM_RESPONSES = (Format.CSV, Format.JSON, Format.JSONLINES)


@dataclass(frozen=True)
class Plan:
    """What to do with one request, decided from its headers alone."""

    request: Format
    response: Format
    predict_proba: bool


def negotiate(
    model: LoadedModel,
    content_type: str | None,
    accept: str | None,
    *,
    predict_proba: bool | None = None,
) -> Plan:
    """Check the headers (415/406/400) and settle the probability option.

    An Accept `predict_proba=` parameter wins over `predict_proba` (which the
    server fills from the custom-attributes header or SERVING_PREDICT_PROBA).
    """
    request = request_format(content_type)
    response, from_accept = response_format(accept, request)
    proba = from_accept if from_accept is not None else bool(predict_proba)
    if proba and not model.has_predict_proba:
        raise RequestError(
            400,
            f"probabilities were asked for, but the model ({model.describe()}) has no "
            f"predict_proba; ask without predict_proba",
        )
    return Plan(request, response, proba)


def run(model: LoadedModel, plan: Plan, body: bytes | Body) -> bytes:
    """Decode, predict and encode one request body (as `bytes` or received chunks)."""
    return respond(model, plan, parse(model, plan.request, body))


def parse(model: LoadedModel | None, fmt: Format, body: bytes | Body) -> Features:
    """The model's input from a request body (also the default `input_fn` of user code)."""
    schema = model.schema if model is not None else None
    if schema is not None and frames.handles(schema, fmt):  # models with named columns
        return frames.decode(fmt, body, schema)
    feature_count = model.feature_count if model is not None else None
    return decode(fmt, body, feature_count, schema=schema)


def respond(model: LoadedModel, plan: Plan, matrix: Features) -> bytes:
    """Predict and encode an already decoded feature matrix."""
    labels, probabilities = predict(model, matrix, plan.predict_proba, _ROW_WORD[plan.request])
    return encode(plan.response, labels, probabilities)


def transform(
    model: LoadedModel,
    body: bytes | Body,
    content_type: str,
    accept: str | None,
    *,
    predict_proba: bool | None = None,
) -> tuple[bytes, str]:
    """Response body and its media type for one /invocations request.

    Raises `RequestError` for anything wrong with the request.
    """
    plan = negotiate(model, content_type, accept, predict_proba=predict_proba)
    return run(model, plan, body), plan.response.value


def predict(
    model: LoadedModel, matrix: Features, proba: bool, word: str = "row"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels, and probability columns when asked.

    Binary classifiers give one column, the probability of `classes[1]` (the
    positive class); others give one column per class in `classes` order.
    """
    estimator = model.estimator
    inputs = matrix
    if model.feature_names_in is not None and isinstance(matrix, np.ndarray):
        # Fitted on a DataFrame: same column names, or scikit-learn warns per call.
        inputs = pd.DataFrame(matrix, columns=list(model.feature_names_in), copy=False)
    labels = np.asarray(_call(estimator.predict, "predict", inputs, matrix, word))
    probabilities = (
        np.asarray(_call(estimator.predict_proba, "predict_proba", inputs, matrix, word))
        if proba
        else None
    )
    for name, values in (("predict", labels), ("predict_proba", probabilities)):
        if values is not None and values.shape[:1] != matrix.shape[:1]:
            count = values.shape[0] if values.ndim else "a scalar instead of"
            raise ModelError(
                f"model error in {name}: returned {count} predictions for {len(matrix)} rows"
            )
    return labels, None if probabilities is None else answered_probabilities(probabilities)


def answered_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """The columns answered: a binary model's positive class only, else one per class."""
    if probabilities.ndim == 2 and probabilities.shape[1] == 2:
        return probabilities[:, 1:]
    return probabilities


def _call(method: Any, name: str, inputs: Any, matrix: Features, word: str) -> Any:
    """Run `predict` / `predict_proba`: a ValueError or TypeError (scikit-learn's
    input validation) blames the request with a 400; anything else is the model's
    own failure, a `ModelError` (500) naming the method, with the traceback kept."""
    try:
        return method(inputs)
    except (ValueError, TypeError) as exc:
        raise _explain_rejection(matrix, exc, word) from None
    except Exception as exc:
        raise ModelError.wrap(exc, name, rows=len(matrix)) from exc


def _explain_rejection(matrix: Features, exc: Exception, word: str) -> RequestError:
    if not isinstance(matrix, np.ndarray):
        return frames.explain_rejection(matrix, exc, word)
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        what = "missing (NaN)" if np.isnan(matrix[row, column]) else "infinite"
        return RequestError(
            400,
            f"{word} {row + 1}, column {column + 1} is {what}, which this model does not "
            f"accept; send finite numbers",
        )
    return input_rejected(exc)


def warm_up(model: LoadedModel) -> float:
    """Run every decoder, encoder and predict path once; return the seconds spent.

    Called in the parent before workers fork, so lazy imports and first-call
    set-up inside pandas and scikit-learn are paid once and inherited: no worker
    pays them on its first request. A failure is only logged (a model may
    reject an all-ones row and still be fine).
    """
    started = time.perf_counter()
    width = model.feature_count
    if width is None:
        log.warning("model does not say how many features it takes; skipping warm-up")
        return 0.0
    row = [1.0] * width
    bodies = {
        Format.CSV: ",".join(["1.0"] * width).encode(),
        Format.JSON: _json_bytes({"instances": [row]}),
        Format.JSONLINES: _json_bytes(row),
    }
    if model.schema is not None and model.schema.needs_frame:
        bodies = frames.sample_bodies(model.schema)  # values the model knows
    options = [None, "true"] if model.has_predict_proba else [None]
    with without_polars():  # runs in serve's parent, before it forks the workers
        for request, body in bodies.items():
            for response in _WARM_RESPONSES:
                for option in options:
                    accept = response.value + (f"; predict_proba={option}" if option else "")
                    try:
                        transform(model, body, request.value, accept)
                    except Exception as exc:
                        log.warning("warm-up %s -> %s failed: %s", request.value, accept, exc)
                        return time.perf_counter() - started
    return time.perf_counter() - started


def _json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value).encode()
