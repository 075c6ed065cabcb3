"""Score ``.out`` files against held-out labels and print the run summary.

Shared by the local run and the cloud run: both end with a directory of ``.out``
files named ``<input>.out`` (the cloud run downloads them from S3 first) and the
``manifest.json`` + ``labels/`` written next to the transform input. Standard
library only, so the cloud path can use it without the training stack.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.errors import UserError


class ScoreError(UserError):
    """The outputs cannot be scored (missing file, wrong row count, bad manifest)."""


@dataclass(frozen=True)
class Score:
    """How many transformed rows got their held-out label right."""

    rows: int
    correct: int
    files: int

    @property
    def accuracy(self) -> float:
        """Share of rows predicted correctly."""
        return self.correct / self.rows if self.rows else float("nan")


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest written by ``model.data.write_transform_input``."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for entry in manifest["files"]:
            if not all(isinstance(entry[key], str) for key in ("input", "labels")):
                raise TypeError("file entries need 'input' and 'labels' names")
    except FileNotFoundError:
        raise ScoreError(f"manifest {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ScoreError(f"manifest {path} is not a valid manifest ({error!r})") from None
    return manifest


def _same_label(predicted: str, label: str) -> bool:
    if predicted == label:
        return True
    try:
        return math.isclose(float(predicted), float(label), rel_tol=0, abs_tol=0)
    except ValueError:
        return False


def first_field(line: str) -> str:
    """The predicted label of one ``.out`` line (its first CSV field, unquoted)."""
    value = line.split(",", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def score_outputs(output_dir: Path, manifest_path: Path) -> Score:
    """Compare the first column of every ``.out`` line with the label of the same row."""
    manifest = load_manifest(manifest_path)
    labels_dir = manifest_path.parent / manifest.get("labels_dir", "labels")
    rows = correct = 0
    for entry in manifest["files"]:
        out_path = output_dir / f"{entry['input']}.out"
        if not out_path.is_file():
            raise ScoreError(
                f"no output for {entry['input']} (expected {out_path}); "
                "the transform did not finish that file"
            )
        predicted = out_path.read_text(encoding="utf-8").splitlines()
        labels = (labels_dir / entry["labels"]).read_text(encoding="utf-8").splitlines()
        if len(predicted) != len(labels):
            raise ScoreError(
                f"{out_path} has {len(predicted)} lines for {len(labels)} input rows; "
                "every input row needs exactly one output line"
            )
        rows += len(labels)
        correct += sum(
            _same_label(first_field(line), label)
            for line, label in zip(predicted, labels, strict=True)
        )
    return Score(rows=rows, correct=correct, files=len(manifest["files"]))


@dataclass
class RunSummary:
    """Everything the closing summary shows; the cloud run fills the same fields."""

    mode: str  # "local" or "cloud"
    status: str  # Completed / Failed, as the transform job reports it
    rows: int
    files: int
    transform_seconds: float
    parameters: str
    score: Score | None = None
    training_metrics: dict[str, Any] = field(default_factory=dict)
    startup_seconds: float | None = None
    failure_reason: str | None = None
    failed_files: int = 0
    job_name: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # label -> path or URI

    @property
    def rows_per_second(self) -> float:
        """Transform throughput (model start-up excluded)."""
        return self.rows / self.transform_seconds if self.transform_seconds > 0 else 0.0

    def as_json(self) -> str:
        """The summary as JSON (written next to the artifacts)."""
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        if self.score is not None:
            data["score"]["accuracy"] = self.score.accuracy
        return json.dumps(data, indent=2, default=str) + "\n"


def format_summary(summary: RunSummary) -> str:
    """The short, aligned text block printed at the end of a run."""
    title = f"Batch transform ({summary.mode}): {summary.status}"
    if summary.job_name:
        title += f" - {summary.job_name}"
    lines = [title]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<15}{value}")

    plural = "s" if summary.files != 1 else ""
    if summary.failed_files:
        written = summary.files - summary.failed_files
        row(
            "rows",
            f"{summary.rows:,} transformed from {written} of {summary.files} files "
            f"({summary.failed_files} failed)",
        )
    else:
        row("rows", f"{summary.rows:,} transformed from {summary.files} file{plural}")
    if summary.score is not None:
        row(
            "accuracy",
            f"{summary.score.accuracy:.4f} on the transform output "
            f"({summary.score.correct:,} of {summary.score.rows:,} held-out labels)",
        )
    metrics = summary.training_metrics
    if "eval_accuracy" in metrics:
        text = f"accuracy {metrics['eval_accuracy']:.4f}"
        if "eval_roc_auc" in metrics:
            text += f", ROC AUC {metrics['eval_roc_auc']:.4f}"
        if "eval_rows" in metrics:
            text += f" on {metrics['eval_rows']:,} evaluation rows"
        row("training", text)
    throughput = f"{summary.rows_per_second:,.0f} rows/s ({summary.transform_seconds:.2f} s"
    if summary.startup_seconds is not None:
        throughput += f"; model server ready in {summary.startup_seconds:.1f} s"
    row("throughput", throughput + ")")
    row("settings", summary.parameters)
    if summary.failure_reason:
        row("failure", summary.failure_reason)
    for label, location in summary.artifacts.items():
        row(label, location)
    return "\n".join(lines)
