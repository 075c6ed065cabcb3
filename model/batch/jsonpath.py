"""The index-based JSONPath subset SageMaker applies to CSV rows (InputFilter/OutputFilter).

SageMaker treats each CSV row as a JSON array, "so only index based JSONPaths can
be applied, e.g. ``$[0]``, ``$[1:]``" (AWS developer guide, "Associate Prediction
Results with Input Records"). Supported here, as that guide and the
``DataProcessing`` API reference describe them:

- ``$`` (and ``$[*]``): the whole row;
- ``$[i]`` and ``$[i,j,...]``: indexes, negative ones counting from the end
  (``-1`` is the last column);
- ``$[start:end]``, ``$[start:]``, ``$[:end]``: a slice. The guide defines the end as
  *inclusive* ("``$[1:4]`` specifies the second through fifth columns"), and so does
  this implementation;
- a list mixing indexes with at most one slice, like the API reference's example
  ``$[0,5:]``. SageMaker rejects more than one range ("only single range filters
  ... are supported"), and so does this module.

An index outside the row is an error, as in SageMaker ("If you specify indexes that
aren't within the dimension size of the joined dataset, you get an error").
Name-based paths (``$.features``, ``$['id']``) only apply to JSON input and are
refused with a message saying so. Expressions are at most 63 characters
(``DataProcessing`` length constraint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.errors import UserError

MAX_FILTER_LENGTH = 63

_INDEX_RE = re.compile(r"^-?\d+$")
_SLICE_RE = re.compile(r"^(?P<start>-?\d+)?:(?P<end>-?\d+)?$")


class FilterError(UserError):
    """An InputFilter/OutputFilter expression, or a row it cannot be applied to."""


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None  # inclusive


@dataclass(frozen=True)
class RowFilter:
    """A parsed filter: which columns of a CSV row to keep, in which order."""

    expression: str
    parts: tuple[int | _Slice, ...] = ()

    @property
    def is_identity(self) -> bool:
        """True for ``$``/``$[*]``: the row passes unchanged (no parsing needed)."""
        return not self.parts

    def apply(self, fields: list[str]) -> list[str]:
        """Select the columns of one row; an index outside the row raises FilterError."""
        if not self.parts:
            return fields
        selected: list[str] = []
        count = len(fields)
        for part in self.parts:
            if isinstance(part, _Slice):
                stop = None if part.end is None or part.end == -1 else part.end + 1
                selected.extend(fields[part.start : stop])
            elif -count <= part < count:
                selected.append(fields[part])
            else:
                raise FilterError(
                    f"{self.expression} selects column {part}, but the row has {count} columns"
                )
        return selected


def parse_filter(expression: str | None, *, parameter: str) -> RowFilter:
    """Parse ``expression`` (``None``/empty means ``$``); raise FilterError when unsupported."""
    if expression is None or expression.strip() in ("", "$", "$[*]"):
        return RowFilter("$")
    if len(expression) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"{parameter} {expression!r} is {len(expression)} characters; SageMaker allows "
            f"at most {MAX_FILTER_LENGTH}"
        )
    text = expression.strip()
    parts: list[int | _Slice] = []
    reason = "not a supported JSONPath"
    if text.startswith("$[") and text.endswith("]") and len(text) > 3:
        for item in (piece.strip() for piece in text[2:-1].split(",")):
            if _INDEX_RE.match(item):
                parts.append(int(item))
                continue
            match = _SLICE_RE.match(item)
            if not match:
                parts = []
                break
            start, end = match.group("start"), match.group("end")
            parts.append(_Slice(int(start) if start else None, int(end) if end else None))
        if sum(isinstance(part, _Slice) for part in parts) > 1:
            parts = []
            reason = "SageMaker supports only a single range per filter"
        if parts:
            return RowFilter(text, tuple(parts))
    if text.startswith(("$.", "$['", '$["')):
        reason = "name-based paths apply to JSON input; CSV rows are arrays"
    raise FilterError(
        f"{parameter} {expression!r}: {reason}. Use $, indexes $[i,j,...] and at most one "
        "slice $[start:end] (end inclusive, either side optional), e.g. $[1:], $[-1], $[0,5:]"
    )
