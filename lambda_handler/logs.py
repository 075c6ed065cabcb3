"""Structured log lines: one JSON object per line on stdout.

Lambda sends each stdout line to the function's CloudWatch log group as one event,
so CloudWatch Logs Insights can filter on the fields (``message``, ``job_name``,
``input``, ``request_id``...). Plain ``print`` of ``json.dumps`` keeps the import cost
at zero (no logging configuration) and works the same under pytest's capsys.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["JsonLogger"]


class JsonLogger:
    """Writes ``{"level": ..., "message": ..., **context, **fields}`` lines."""

    def __init__(self, **context: Any) -> None:
        self.context = {k: v for k, v in context.items() if v is not None}

    def log(self, level: str, message: str, **fields: Any) -> None:
        line = {"level": level, "message": message, **self.context, **fields}
        # ensure_ascii: keys may hold anything, including lone surrogates; ASCII JSON
        # always encodes.
        sys.stdout.write(json.dumps(line, default=str, ensure_ascii=True) + "\n")
        sys.stdout.flush()

    def info(self, message: str, **fields: Any) -> None:
        self.log("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("ERROR", message, **fields)
