"""A thread-safe tqdm progress bar for a transform, and a ticker while serve starts.

tqdm belongs to the ``pipeline`` dependency group; without it the run simply shows
no bar (the summary at the end says everything that matters).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
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


class StartupTicker:
    """Say ``starting the model server... 7 s`` while serve starts (8-20 s of silence
    otherwise), then ``model server ready in 9.1 s``. On a terminal the seconds tick in
    place; elsewhere (CI logs, pipes) there is one line at the start and one at the end.
    """

    def __init__(self, stream: Any, *, interval: float = 1.0) -> None:
        self._stream = stream
        self._interval = interval
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> StartupTicker:
        return self

    def begin(self) -> None:
        """The server is being launched (pass as ``on_launch``)."""
        self._started = time.monotonic()
        self._write("starting the model server...", end="" if self._tty else "\n")
        if self._tty:
            self._thread = threading.Thread(target=self._tick, name="startup-ticker", daemon=True)
            self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop(None)

    def _tick(self) -> None:
        while not self._ready.wait(self._interval):
            elapsed = time.monotonic() - self._started
            self._write(f"\rstarting the model server... {elapsed:.0f} s", end="")

    def _stop(self, message: str | None) -> None:
        if self._ready.is_set() or not self._started:
            return
        self._ready.set()
        if self._thread is not None:
            self._thread.join()
            self._write("\r\033[K" if message else "", end="")
            if not message:
                self._write("")  # end the ticking line
        if message:
            self._write(message)

    def then(self, hook: Any) -> Any:
        """A start hook that ends the ticker, then calls ``hook`` (e.g. a ProgressBar)."""

        def start(files: list[InputFile], parameters: ResolvedParameters) -> ProgressCallback:
            self._stop(f"model server ready in {time.monotonic() - self._started:.1f} s")
            return hook(files, parameters)

        return start

    def _write(self, text: str, end: str = "\n") -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(text + end)
            self._stream.flush()
