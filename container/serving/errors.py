"""Errors the serving code raises on purpose.

Two kinds, kept apart because they end differently: a `RequestError` becomes a
one-line 4xx answer and the worker keeps serving; a `StartupError` stops `serve`
before it listens, with a non-zero exit and one line naming what to fix.
"""

from __future__ import annotations


class RequestError(Exception):
    """A client sent something the server cannot answer; becomes an HTTP 4xx.

    `message` is a single line meant for the person who sent the request: what was
    wrong and, where it helps, what to send instead.
    """

    def __init__(self, status: int, message: str) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"RequestError status must be a 4xx, got {status}")
        # One line only: newlines would break log lines and CSV-minded clients.
        self.status = status
        self.message = " ".join(message.splitlines()).strip()
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.message!r})"


class StartupError(Exception):
    """`serve` cannot start (bad setting, missing or unreadable model)."""


class ModelError(Exception):
    """The model (or the user's inference code) failed on a well-formed request: a 500.

    `message` is one line naming the function and the exception, for the client;
    the traceback goes to the server log only. `deterministic` errors would fail
    the same way on a retry, so the answer carries `X-Model-Error: deterministic`
    and the local runner does not retry them (see /invocations in the package doc).
    """

    HEADER = "x-model-error"

    def __init__(self, message: str, *, deterministic: bool = True) -> None:
        self.message = " ".join(message.split())[:500]
        self.deterministic = deterministic
        super().__init__(self.message)

    @classmethod
    def wrap(
        cls, exc: BaseException, function: str, *, where: str = "", rows: int | None = None
    ) -> ModelError:
        """`model error in predict_fn of FILE (3 rows): KeyError: 'x'`, chained to `exc`."""
        origin = f" of {where}" if where else ""
        count = f" ({rows} rows)" if rows is not None else ""
        error = cls(
            f"model error in {function}{origin}{count}: {describe_error(exc)}",
            deterministic=not isinstance(exc, MemoryError),
        )
        error.__cause__ = exc
        return error

    def headers(self) -> dict[str, str]:
        return {self.HEADER: "deterministic"} if self.deterministic else {}


def describe_error(exc: BaseException) -> str:
    """`KeyError: 'x'`: the exception's type and message on one line, for a client."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def input_rejected(exc: BaseException) -> RequestError:
    """The 400 for input the model's own validation refused (scikit-learn raises ValueError)."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return RequestError(400, f"the model rejected the input: {text}")
