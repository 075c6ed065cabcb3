"""SageMaker inference server for scikit-learn models (Starlette + uvicorn).

Start it with the `serve` console script (also the image's entry point:
`docker run IMAGE serve`), or `python -m serving`. It loads `model.joblib`
(any fitted estimator or Pipeline with `predict`) and the optional
`metadata.json` from `MODEL_DIR` once, warms up, then forks one worker per CPU;
a missing or unreadable model stops it with a non-zero exit and one line
naming the file and the problem.

Environment
-----------
MODEL_DIR                 model directory (default /opt/ml/model)
SAGEMAKER_BIND_TO_PORT    port (default 8080)
SERVING_HOST              bind address (default 0.0.0.0)
SERVING_WORKERS           worker processes (default: usable CPUs)
SERVING_MAX_PAYLOAD_MB    MaxPayloadInMB advertised by /execution-parameters (default 6)
SERVING_MAX_BODY_MB       request bodies above this many MiB get 413 (default 110)
SERVING_PREDICT_PROBA     true: add probability columns to every answer (default false)
SERVING_WORKER_TIMEOUT    seconds a worker's event loop may be stuck before it is killed
                          and replaced (default SAGEMAKER_MODEL_SERVER_TIMEOUT, else 600,
                          plus 60)
SERVING_HEADER_TIMEOUT    seconds a client has to send a request head (default 30; then 408)
SERVING_BODY_TIMEOUT      seconds a request body may stall (default 60; then 408)
SERVING_MAX_HEADER_KB     request heads above this many KiB get 431 (default 64)
SERVING_MAX_CONNECTIONS   open connections per worker; more get 503 (default 1000)

Routes
------
GET  /ping                  200, empty body (only ever answered once the model is loaded)
GET  /execution-parameters  {"MaxConcurrentTransforms": <workers>,
                             "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": <n>}
                            (n shrinks if workers x n would exceed SageMaker's 100)
POST /invocations           see below

Requests (Content-Type; parameters such as `charset=utf-8` are accepted)
-------------------------------------------------------------------------
text/csv                    headerless, one row per line, comma-separated numbers
application/json            {"instances": [[...], ...]} or a bare list of rows
application/jsonlines       one JSON array of numbers per line
application/x-parquet       one whole Parquet file (Batch Transform SplitType None):
                            numeric columns in the model's order, or matched by
                            name for a model fitted on a DataFrame
application/x-npy           one 2-D numeric array saved by numpy.save (no pickles)
An empty field, NaN, NA or null (JSON null) is a missing value; it reaches the
model, and a model that cannot take missing (or infinite) values gets a 400
naming the line and column.

Responses (Accept: text/csv, application/json, application/jsonlines, application/x-parquet)
-------------------------------------------------------------------------------------------
Missing Accept or */* answers in the request's format (CSV for Parquet and NPY
requests). Each input row gives one output row, in order: the predicted label,
followed by probabilities when asked.

text/csv                    one output row per line: `label[,p...]`
application/json            {"predictions": [row, ...]}
application/jsonlines       one JSON value per line (a row)
application/x-parquet       one file: `prediction`, then `probability` (binary)
                            or `probability_0`... (one per class)
NaN or infinite predictions and probabilities are `null` in JSON (which cannot
spell them) and `nan` / `inf` / `-inf` in CSV (which pandas, polars, numpy and
float() read back as such). A label holding a comma, a quote or a line break
is quoted as RFC 4180 says: a CSV reader gets one record per row (a consumer
that splits on line breaks instead would not).

Lines are joined by "\\n" with no trailing newline (Batch Transform's
AssembleWith=Line adds one per response).

Probabilities
-------------
For classifiers with predict_proba, ask per request with an Accept parameter,
`Accept: text/csv; predict_proba=true`, or with the header
`X-Amzn-SageMaker-Custom-Attributes: predict_proba=true`; or for every request
with SERVING_PREDICT_PROBA=true (per-request values win, Accept first). A
binary classifier adds one column, the probability of its positive class
(`classes_[1]`); a multi-class one adds a column per class in `classes_` order.
In JSON a row is then `[label, p, ...]` instead of `label`.

Errors
------
Anything wrong with a request gets a 4xx and one line of text/plain saying what
and where: 400 (empty body, malformed CSV/JSON, wrong number of values with the
line and the expected count, non-numeric value, NaN/inf the model cannot take),
415 (Content-Type), 406 (Accept), 413 (body over SERVING_MAX_BODY_MB). The
worker keeps serving. A model that fails on a well-formed request (its predict
raises, or returns the wrong number of rows) gets a 500 with one line such as
`model error in predict (1000 rows): KeyError: 'x'` and the header
`X-Model-Error: deterministic` (retrying cannot help); the traceback goes to
the server log.

User code
---------
`code/inference.py` in the model directory, or SAGEMAKER_PROGRAM (in
SAGEMAKER_SUBMIT_DIRECTORY), with AWS's scikit-learn container hooks
(model_fn, input_fn, predict_fn, output_fn or transform_fn): see
`serving.user_code`.
"""
