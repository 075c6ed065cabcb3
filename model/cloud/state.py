"""``run.json``: what a cloud run made and is waiting for, saved in its run directory.

Written after every step, so a run that ends early (``--no-wait``, Ctrl-C, an
error, a closed laptop) can be picked up with ``--resume RUN_DIR``: follow the
job(s), download the ``.out`` files and score them against the labels kept next to
it. Also the record of what to clean up (the ledger).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.cloud.ledger import Ledger
from model.errors import UserError

STATE_FILE = "run.json"


@dataclass
class JobState:
    """One transform job of the run and the input files it transforms."""

    name: str
    output_uri: str
    inputs: list[str]


@dataclass
class RunState:
    """Everything ``--resume`` needs, plus the ledger."""

    stack: str
    region: str
    bucket: str
    run_id: str
    workdir: str
    via_lambda: bool = False
    model_name: str | None = None
    model_uri: str | None = None
    input_uri: str | None = None
    current_model_parameter: str | None = None
    settings: str = ""
    jobs: list[JobState] = field(default_factory=list)
    training_metrics: dict[str, Any] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)

    @property
    def path(self) -> Path:
        """``<workdir>/run.json``."""
        return Path(self.workdir) / STATE_FILE

    def save(self) -> None:
        """Write run.json atomically (a reader never sees half a file)."""
        data = asdict(self)
        data["ledger"] = self.ledger.as_list()
        text = json.dumps(data, indent=2, default=str) + "\n"
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".run.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            Path(temp).replace(self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, workdir: Path) -> RunState:
        """The state saved in ``workdir``; UserError when there is none."""
        path = workdir / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            jobs = [JobState(**job) for job in data.pop("jobs", [])]
            ledger = Ledger.from_list(data.pop("ledger", []))
            state = cls(**data, jobs=jobs, ledger=ledger)
        except FileNotFoundError:
            raise UserError(
                f"{path} does not exist: --resume takes the run directory a cloud run printed "
                "(artifacts/cloud/<date-time>)"
            ) from None
        except (OSError, ValueError, TypeError) as error:
            raise UserError(f"{path} is not a readable run state ({error})") from None
        state.workdir = str(workdir)
        return state
