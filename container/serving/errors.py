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
