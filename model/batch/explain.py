"""Why a file failed, in one line that names the record (bisecting a rejected batch).

To name the record when the server rejects a MultiRecord request (4xx), the runner
narrows the request down by bisection: a few extra requests, sent only on failure,
until one record is left (SageMaker itself only reports the failed request). A model
error or a crash is reported for the batch's line range: the server's one-line body
says what failed, and the record is not worth more crashes to find.
"""

from __future__ import annotations

import re

from model.batch.client import InvocationClient, InvocationError
from model.batch.records import Batch

_BISECTABLE_STATUSES = (400, 422)  # "this input is wrong"; 413/415/406 concern the request
_MAX_BISECTION_REQUESTS = 64


def explain_failure(client: InvocationClient, batch: Batch, failure: InvocationError) -> str:
    """The reason a file failed, naming the record (bisecting a rejected batch)."""
    if batch.records == 0:  # a whole binary file (Parquet, NPY): no lines to name or split
        return f"{batch.describe_lines()}: {failure.describe('the file')}"
    if batch.records == 1:
        return (
            f"line {batch.first_line}: {_relabel(failure, batch.first_line).describe('the record')}"
        )
    if failure.status not in _BISECTABLE_STATUSES:
        return f"{batch.describe_lines()}: {failure.describe('these records')}"
    records = batch.payload.split(b"\n")
    low, high = 0, len(records)  # the rejected range
    last = failure
    probes = 0
    while high - low > 1 and probes < _MAX_BISECTION_REQUESTS:
        middle = (low + high) // 2
        narrowed = False
        for start, stop in ((low, middle), (middle, high)):
            probes += 1
            try:
                client.invoke(b"\n".join(records[start:stop]))
            except InvocationError as probe:
                if probe.status not in _BISECTABLE_STATUSES:
                    return f"{batch.describe_lines()}: {failure.describe('these records')}"
                low, high, last, narrowed = start, stop, probe, True
                break
        if not narrowed:
            break  # each half passes alone: the batch fails only as a whole
    if high - low == 1:
        line = batch.first_line + low
        return f"line {line}: {_relabel(last, line).describe('the record')}"
    return f"{batch.describe_lines()}: {failure.describe('these records')}"


_FIRST_ROW = re.compile(r"^(HTTP \d+: )(line|row) 1\b")


def _relabel(failure: InvocationError, line: int) -> InvocationError:
    """A one-record request's "line 1" in the server's message is file line ``line``."""
    reason = _FIRST_ROW.sub(lambda m: f"{m.group(1)}{m.group(2)} {line}", failure.reason)
    return InvocationError(
        reason,
        status=failure.status,
        attempts=failure.attempts,
        model_error=failure.model_error,
        crashes=failure.crashes,
    )
