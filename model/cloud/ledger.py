"""What a cloud run created or changed in AWS, with the command that undoes each.

Every step records itself here as soon as AWS accepted it, so whatever ends the
run (success, an error, Ctrl-C) the user is told exactly what now exists, where,
and how to clean it up or look at it. The ledger is also saved in the run
directory's ``run.json``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class Entry:
    """One thing that exists in AWS because of this run."""

    what: str  # e.g. "S3 objects", "SageMaker model"
    where: str  # URI, name or ARN
    cleanup: str  # a shell command, or a sentence when there is nothing to do


@dataclass
class Ledger:
    """The entries of one run, in the order they were created."""

    entries: list[Entry] = field(default_factory=list)

    def add(self, what: str, where: str, cleanup: str) -> None:
        """Record something AWS now holds (once: a repeated entry is ignored)."""
        entry = Entry(what, where, cleanup)
        if entry not in self.entries:
            self.entries.append(entry)

    def as_list(self) -> list[dict[str, str]]:
        """Plain dicts for run.json."""
        return [asdict(entry) for entry in self.entries]

    @classmethod
    def from_list(cls, items: list[dict[str, str]]) -> Ledger:
        """The ledger saved in run.json."""
        return cls([Entry(**item) for item in items])

    def format(self) -> str:
        """A block listing each entry and its clean-up command."""
        if not self.entries:
            return "Nothing was created in AWS."
        lines = ["Created in AWS by this run (clean up or inspect with the commands shown):"]
        for entry in self.entries:
            lines.append(f"  {entry.what}: {entry.where}")
            lines.append(f"    {entry.cleanup}")
        return "\n".join(lines)

    def print(self, stream: TextIO | None = None) -> None:
        """Write ``format()`` to ``stream`` (stderr by default)."""
        print(self.format(), file=stream or sys.stderr, flush=True)
