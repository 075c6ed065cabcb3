"""What every script does around its work: one-line errors, clean Ctrl-C and SIGTERM.

A ``UserError`` becomes ``error: <message>`` and exit status 1, never a traceback.
Ctrl-C and SIGTERM both unwind through the normal ``finally`` blocks (the model
server is stopped, temporary files are removed) and end with status 130 / 143.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

from model.errors import UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interruption so cleanup code runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def run_main(main: Callable[[], int]) -> int:
    """Run ``main`` and turn user errors and interruptions into exit statuses."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return main()
    except UserError as error:
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"error: {message}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated: the model server was stopped; no partial output left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: the model server was stopped; no partial output left", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
