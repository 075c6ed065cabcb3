"""A thread-safe tqdm progress bar for a transform, in bytes of input consumed.

tqdm belongs to the ``pipeline`` dependency group; without it the run simply shows
no bar (the summary at the end says everything that matters).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from model.batch.params import ResolvedParameters
from model.batch.runner import InputFile, ProgressCallback


class ProgressBar:
    """Pass as ``on_start`` to ``run_local_transform``; call ``close`` when the run ends."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        self.records = 0

    def __call__(self, files: list[InputFile], parameters: ResolvedParameters) -> ProgressCallback:
        """Open the bar once the inputs are known; return the per-batch callback."""
        if self._enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                count = len(files)
                self._bar = tqdm(
                    total=sum(f.size for f in files),
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"transform {count} file{'s' if count != 1 else ''}",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    leave=False,
                    disable=None,  # no bar when stderr is not a terminal (CI, pipes)
                )
        return self._advance

    def _advance(self, records: int, input_bytes: int) -> None:
        with self._lock:
            self.records += records
            if self._bar is not None:
                self._bar.update(input_bytes)
                self._bar.set_postfix_str(f"{self.records:,} rows", refresh=False)

    def close(self) -> None:
        """Remove the bar (the summary replaces it)."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
