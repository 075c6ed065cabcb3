"""report.html: self-contained, the three plots, the settings, and never a failed run."""

from __future__ import annotations

import base64
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from model.report_html import REPORT_FILE, add_html_report

from .conftest import RunFactory

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _images(text: str) -> dict[str, bytes]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    return {alt: base64.b64decode(data, validate=True) for alt, data in found}


def test_report_has_the_plots_and_settings_and_nothing_external(
    finished_run: RunFactory,
) -> None:
    workdir, summary = finished_run()
    path = add_html_report(workdir, summary)

    assert path == workdir / REPORT_FILE
    assert summary.artifacts["report"] == str(path)  # printed with the summary
    text = path.read_text(encoding="utf-8")
    images = _images(text)
    assert sorted(images) == ["Confusion matrix", "ROC curve", "Score distribution"]
    assert all(png.startswith(PNG_SIGNATURE) and len(png) > 5000 for png in images.values())
    # Self-contained: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert f"{summary.score.accuracy:.4f}" in text
    assert summary.parameters in text
    assert f"{summary.rows_per_second:,.0f}" in text  # throughput
    assert "6.5 s" in text  # model server start-up
    assert not list(workdir.glob(".report*"))  # no temporary file left behind


def test_multiclass_run_gets_one_roc_curve_per_class(finished_run: RunFactory) -> None:
    workdir, summary = finished_run(class_balance=(0.5, 0.3, 0.2))
    text = add_html_report(workdir, summary).read_text(encoding="utf-8")  # type: ignore[union-attr]

    assert sorted(_images(text)) == ["Confusion matrix", "ROC curve", "Score distribution"]
    assert "[0, 1, 2]" in text  # class labels from metadata.json in the settings


def test_table_model_with_text_labels_gets_every_plot(
    finished_run: RunFactory, tmp_path: Path
) -> None:
    """A model trained on a user's table (--data) takes a DataFrame; labels are words."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    age = rng.integers(18, 80, 1200)
    plan = rng.choice(["basic", "pro"], 1200)
    churn = np.where((age > 50) ^ (plan == "pro") ^ (rng.random(1200) < 0.1), "yes", "no")
    table = tmp_path / "customers.csv"
    pd.DataFrame({"age": age, "plan": plan, "churn": churn}).to_csv(table, index=False)
    workdir, summary = finished_run(table=table, target="churn")

    text = add_html_report(workdir, summary).read_text(encoding="utf-8")  # type: ignore[union-attr]

    assert sorted(_images(text)) == ["Confusion matrix", "ROC curve", "Score distribution"]
    assert "predict_proba failed" not in text


def test_read_run_scores_a_mixed_type_dataframe_model_on_typed_columns(tmp_path: Path) -> None:
    """A hand-built ColumnTransformer model is scored on a DataFrame, not a plain array.

    A plain ``to_numpy()`` matrix has no column names, so the ColumnTransformer's
    ``predict_proba`` raises and the report loses its ROC curve and score plot.
    """
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from model.artifact import describe_columns, write_model_archive
    from model.data import write_transform_input
    from model.report_html import read_run

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50.0, 10.0, 120).round(2),
            "city": pd.Series(rng.choice(["oslo", "lima", "pune"], 120), dtype=object),
        }
    )
    frame.loc[[4, 9], "city"] = np.nan  # an empty field in the CSV, as in a real table
    labels = np.where(frame["income"] + (frame["city"] == "lima") * 8 > 52, "high", "low")
    text = make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder())
    model = make_pipeline(
        ColumnTransformer([("num", "passthrough", ["income"]), ("text", text, ["city"])]),
        LogisticRegression(),
    ).fit(frame, labels)
    workdir = tmp_path / "run"
    workdir.mkdir()
    write_model_archive(model, describe_columns(frame), workdir / "model.tar.gz")
    inputs = write_transform_input(frame, labels, workdir, files=2)
    (workdir / "output").mkdir()
    for name, rows in zip(inputs.files, np.array_split(np.arange(len(frame)), 2), strict=True):
        predicted = model.predict(frame.iloc[rows])
        (workdir / "output" / f"{name}.out").write_text("\n".join(predicted) + "\n")

    data = read_run(workdir)

    assert data.note == ""
    assert data.classes == ["high", "low"]
    assert data.predicted == model.predict(frame).tolist()
    assert data.probabilities is not None
    np.testing.assert_allclose(data.probabilities, model.predict_proba(frame), rtol=1e-9)


def test_failed_run_still_gets_a_report_without_plots(finished_run: RunFactory) -> None:
    workdir, summary = finished_run()
    summary.status = "Failed"
    summary.failure_reason = "part-0001.csv line 3: 400 from the model server"

    text = add_html_report(workdir, summary).read_text(encoding="utf-8")  # type: ignore[union-attr]

    assert _images(text) == {}
    assert "no plots: the transform did not complete" in text
    assert "part-0001.csv line 3" in text


def test_without_matplotlib_the_run_goes_on_with_a_note(
    finished_run: RunFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir, summary = finished_run()
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError

    assert add_html_report(workdir, summary) is None

    err = capsys.readouterr().err.strip()
    assert err.startswith("note: no report.html (matplotlib") and "\n" not in err
    assert "report" not in summary.artifacts
    assert not (workdir / REPORT_FILE).exists()


def test_an_unreadable_run_directory_costs_the_report_not_the_run(
    finished_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir, summary = finished_run()
    (workdir / "manifest.json").write_text("{not json")

    assert add_html_report(workdir, summary) is None
    err = capsys.readouterr().err.strip()
    assert err.startswith("note: no report.html (manifest") and "\n" not in err
    assert not list(workdir.glob("*report*"))


def test_matplotlib_is_a_pipeline_dependency_and_stays_out_of_the_serving_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [re.split(r"[<>=!~;\[ ]", dep)[0].lower() for dep in project["project"]["dependencies"]]
    pipeline = [d for d in project["dependency-groups"]["pipeline"] if isinstance(d, str)]
    assert any(dep.startswith("matplotlib") for dep in pipeline)
    assert "matplotlib" not in names
    requirements = (ROOT / "container" / "requirements.txt").read_text(encoding="utf-8")
    assert not re.search(r"^(matplotlib|pillow|contourpy)==", requirements, re.MULTILINE)


def test_summary_json_lists_the_report(finished_run: RunFactory) -> None:
    """The run writes the report first, so summary.json names it (as model/pipeline.py does)."""
    workdir, summary = finished_run()
    add_html_report(workdir, summary)
    assert json.loads(summary.as_json())["artifacts"]["report"] == str(workdir / REPORT_FILE)
