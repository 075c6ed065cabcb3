"""A small self-contained HTML report of a run, written next to ``summary.json``.

People would rather look at a ROC curve and a confusion matrix than read numbers,
so the local and the cloud run both end by writing ``report.html``: the summary,
the settings used, throughput, and three plots (ROC curve, confusion matrix,
score distribution) drawn with matplotlib and embedded as base64 PNG, so the file
opens anywhere with no network, JavaScript or other files.

The confusion matrix compares the transform's own ``.out`` labels with the
held-out labels. The transform output holds labels only, so the ROC curve and the
score distribution use the model's ``predict_proba`` on the same input, computed
here in-process from ``model.tar.gz``.

matplotlib lives in the ``pipeline`` dependency group, never in the serving image;
without it (or on any other problem) the run still succeeds and says in one line
why there is no report.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.report import RunSummary, first_field, load_manifest

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
FIGURE_DPI = 96
# Enough rows for smooth plots; larger runs are sampled (seeded) to keep the report quick.
MAX_SCORED_ROWS = 200_000


@dataclass(frozen=True)
class RunData:
    """What the plots need, read back from the run directory."""

    true_labels: list[str]  # held-out labels, in input order
    predicted: list[str] | None  # first field of each .out line (None: no output to read)
    classes: list[str]  # the model's classes_, as text, in predict_proba column order
    probabilities: np.ndarray | None  # predict_proba on the transform input
    metadata: dict[str, Any]
    note: str = ""  # why a part of the report is missing


def read_run(workdir: Path) -> RunData:
    """Labels, the transform's predictions and the model's scores for ``workdir``."""
    import numpy as np
    import pandas as pd

    from model.artifact import load_model_archive
    from model.data import read_transform_input

    manifest = load_manifest(workdir / "manifest.json")
    labels_dir = workdir / manifest.get("labels_dir", "labels")
    input_dir = workdir / manifest.get("input_dir", "input")
    model, metadata = load_model_archive(workdir / "model.tar.gz")
    true_labels: list[str] = []
    predicted: list[str] | None = []
    parts = []
    for entry in manifest["files"]:
        labels = (labels_dir / entry["labels"]).read_text(encoding="utf-8").splitlines()
        true_labels.extend(labels)
        out_path = workdir / "output" / f"{entry['input']}.out"
        if predicted is not None and out_path.is_file():
            lines = out_path.read_text(encoding="utf-8").splitlines()
            predicted.extend(first_field(line) for line in lines)
        else:
            predicted = None
        # As the model takes it: a DataFrame with the training columns for a table model.
        parts.append(read_transform_input(input_dir / entry["input"], metadata))
    if predicted is not None and len(predicted) != len(true_labels):
        predicted = None
    classes = [str(value) for value in getattr(model, "classes_", [])]
    probabilities = None
    note = ""
    if hasattr(model, "predict_proba") and parts:
        if isinstance(parts[0], pd.DataFrame):
            features = pd.concat(parts, ignore_index=True)
        else:
            features = np.concatenate(parts)
        try:
            probabilities = np.asarray(model.predict_proba(features), dtype=float)
        except Exception as error:  # the user's model: any failure only costs these two plots
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            note = f"no ROC curve or score distribution: predict_proba failed ({reason})"
    else:
        note = "no ROC curve or score distribution: the model has no predict_proba"
    return RunData(true_labels, predicted, classes, probabilities, metadata, note)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    # Fixed margins (set where each figure is made) instead of bbox_inches="tight",
    # which draws every figure twice: the report's cost is mostly drawing.
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _sample(data: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, probabilities) of at most MAX_SCORED_ROWS rows."""
    import numpy as np

    assert data.probabilities is not None
    truth = np.asarray(data.true_labels, dtype=object)
    scores = data.probabilities
    if len(truth) > MAX_SCORED_ROWS:
        keep = np.random.default_rng(0).choice(len(truth), MAX_SCORED_ROWS, replace=False)
        truth, scores = truth[keep], scores[keep]
    return truth, scores


def roc_figure(data: RunData) -> Figure:
    """ROC curve of the positive class (binary) or one-vs-rest per class."""
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, roc_curve

    truth, scores = _sample(data)
    figure = Figure(figsize=(4.6, 4.2))
    figure.subplots_adjust(left=0.14, right=0.96, bottom=0.12, top=0.92)
    ax = figure.subplots()
    columns = [1] if len(data.classes) == 2 else range(len(data.classes))
    for column in columns:
        name = data.classes[column]
        fpr, tpr, _ = roc_curve(truth == name, scores[:, column])
        label = f"{name} (AUC {auc(fpr, tpr):.4f})"
        ax.plot(fpr, tpr, label=label if len(data.classes) > 2 else f"AUC {auc(fpr, tpr):.4f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(
        "ROC curve" + (f" (positive class {data.classes[1]})" if len(columns) == 1 else "")
    )
    ax.legend(loc="lower right")
    return figure


def confusion_figure(data: RunData) -> Figure:
    """Counts of held-out label (rows) against the transform's prediction (columns)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    assert data.predicted is not None
    classes = data.classes or sorted(set(data.true_labels) | set(data.predicted))
    extra = sorted((set(data.true_labels) | set(data.predicted)) - set(classes))
    labels = [*classes, *extra]
    matrix = confusion_matrix(data.true_labels, data.predicted, labels=labels)
    size = 1.6 + 0.7 * len(labels)
    figure = Figure(figsize=(max(size, 4.4), max(size, 3.8)))
    figure.subplots_adjust(left=0.17, right=0.86, bottom=0.16, top=0.91)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in _cells(matrix):
        colour = "white" if count > threshold else "black"
        ax.text(column, row, f"{count:,}", ha="center", va="center", color=colour)
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted (transform output)",
        ylabel="held-out label",
        title="Confusion matrix",
    )
    return figure


def _cells(matrix: np.ndarray) -> list[tuple[tuple[int, int], int]]:
    return [
        ((r, c), int(matrix[r, c])) for r in range(matrix.shape[0]) for c in range(matrix.shape[1])
    ]


def score_figure(data: RunData) -> Figure:
    """Histogram of the positive-class score (binary) or the top score, split by true class."""
    from matplotlib.figure import Figure

    truth, scores = _sample(data)
    binary = len(data.classes) == 2
    values = scores[:, 1] if binary else scores.max(axis=1)
    figure = Figure(figsize=(5.2, 3.6))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.91)
    ax = figure.subplots()
    for name in data.classes:
        ax.hist(values[truth == name], bins=50, range=(0, 1), alpha=0.55, label=f"true {name}")
    ax.set(
        xlabel=f"predicted probability of {data.classes[1]}" if binary else "highest probability",
        ylabel="rows",
        title="Score distribution",
    )
    ax.legend()
    return figure


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#1f2328;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:.25em .9em .25em 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#57606a}.plots{display:flex;flex-wrap:wrap;gap:1.5em}
.ok{color:#1a7f37}.bad{color:#cf222e}.note{color:#57606a}code{font-size:.95em}
"""


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in rows
    )
    return f"<table>{body}</table>"


_METRIC_LABELS = {
    "eval_accuracy": "accuracy on the evaluation rows",
    "eval_roc_auc": "ROC AUC on the evaluation rows",
    "train_rows": "training rows",
    "eval_rows": "evaluation rows",
}


def _overview(summary: RunSummary) -> list[tuple[str, str]]:
    rows = [("status", summary.status), ("rows", f"{summary.rows:,} from {summary.files} files")]
    if summary.job_name:
        rows.append(("job", summary.job_name))
    if summary.score is not None:
        rows.append(
            (
                "accuracy",
                f"{summary.score.accuracy:.4f} ({summary.score.correct:,} of "
                f"{summary.score.rows:,} held-out labels)",
            )
        )
    for key, value in summary.training_metrics.items():
        label = _METRIC_LABELS.get(key, key.replace("_", " "))
        rows.append(
            (f"training: {label}", f"{value:.4f}" if isinstance(value, float) else f"{value:,}")
        )
    if summary.failure_reason:
        rows.append(("failure", summary.failure_reason))
    return rows


def _throughput(summary: RunSummary) -> list[tuple[str, str]]:
    rows = [
        ("rows/s", f"{summary.rows_per_second:,.0f}"),
        ("transform time", f"{summary.transform_seconds:.2f} s"),
    ]
    if summary.startup_seconds is not None:
        rows.append(("model server ready in", f"{summary.startup_seconds:.1f} s"))
    return rows


def _settings(summary: RunSummary, metadata: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("mode", summary.mode), ("job settings", summary.parameters)]
    for key in ("feature_count", "class_labels", "seed"):
        if key in metadata:
            rows.append((key.replace("_", " "), str(metadata[key])))
    versions = metadata.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    rows.extend((label, location) for label, location in summary.artifacts.items())
    return rows


def render_html(summary: RunSummary, data: RunData | None, note: str = "") -> str:
    """The whole report as one HTML string (plots inline, no external resources)."""
    plots: list[tuple[str, str]] = []
    notes = [text for text in (note, data.note if data else "") if text]
    if data is not None and data.probabilities is not None and len(data.classes) >= 2:
        plots.append(("ROC curve", _png(roc_figure(data))))
    if data is not None and data.predicted is not None:
        plots.append(("Confusion matrix", _png(confusion_figure(data))))
    elif data is not None:
        notes.append("no confusion matrix: the transform output is incomplete")
    if data is not None and data.probabilities is not None and len(data.classes) >= 2:
        plots.append(("Score distribution", _png(score_figure(data))))
    status_class = "ok" if summary.status == "Completed" else "bad"
    title = f"Batch transform ({summary.mode}): {summary.status}"
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{png}"></figure>'
        for name, png in plots
    )
    note_html = "".join(f'<p class="note">{html.escape(text)}</p>' for text in notes)
    metadata = data.metadata if data else {}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Batch transform ({html.escape(summary.mode)}): "
        f'<span class="{status_class}">{html.escape(summary.status)}</span></h1>'
        f"{_table(_overview(summary))}"
        f'<h2>Plots</h2><div class="plots">{images}</div>{note_html}'
        f"<h2>Throughput</h2>{_table(_throughput(summary))}"
        f"<h2>Settings</h2>{_table(_settings(summary, metadata))}"
        "</body></html>\n"
    )


def _import_plotting() -> None:
    with contextlib.suppress(ImportError):
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401


def import_plotting_in_background() -> None:
    """Start importing matplotlib (1-2 s) on a thread while the run waits for serve.

    The local job spends seconds waiting for the model server to start; doing the
    import then keeps the report from adding that time at the end of the run.
    """
    threading.Thread(target=_import_plotting, name="import-matplotlib", daemon=True).start()


def write_html_report(workdir: Path, summary: RunSummary) -> Path:
    """Render ``workdir/report.html`` (written to a temporary file, then renamed)."""
    data: RunData | None = None
    note = ""
    if summary.status == "Completed":
        data = read_run(workdir)
    else:
        note = "no plots: the transform did not complete"
    text = render_html(summary, data, note)
    target = workdir / REPORT_FILE
    temp = workdir / f".{REPORT_FILE}.{os.getpid()}.tmp"
    try:
        temp.write_text(text, encoding="utf-8")
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def add_html_report(workdir: Path, summary: RunSummary) -> Path | None:
    """Write the report and list it in ``summary.artifacts``; never fails the run.

    A missing matplotlib or an unreadable run directory costs the report, not the
    run: one ``note:`` line on stderr says why.
    """
    try:
        path = write_html_report(workdir, summary)
    except ImportError as error:
        print(
            f"note: no report.html ({error.name or error} is not installed; "
            "`uv sync --group pipeline` adds it)",
            file=sys.stderr,
        )
        return None
    except Exception as error:  # a report problem must not turn a finished run into a failure
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"note: no report.html ({reason})", file=sys.stderr)
        return None
    summary.artifacts["report"] = str(path)
    return path
