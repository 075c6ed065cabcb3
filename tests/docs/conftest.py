"""Fixtures for the docs tests: a finished run directory without starting a server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from model.report import RunSummary, score_outputs

RunFactory = Callable[..., tuple[Path, RunSummary]]


@pytest.fixture
def finished_run(tmp_path: Path) -> RunFactory:
    """A run directory laid out like the local job's, with .out files from the model itself.

    Training and packaging are the real ones (model.pipeline.train_and_package); only
    the transform is replaced by the model's own predict, which is what serve answers.
    """
    from model.artifact import load_model_archive
    from model.pipeline import DataSettings, train_and_package

    def make(
        *,
        rows: int = 3000,
        class_balance: tuple[float, ...] = (0.5, 0.5),
        name: str = "run",
        table: Path | None = None,
        target: str | None = None,
    ) -> tuple[Path, RunSummary]:
        from model.data import read_transform_input

        workdir = tmp_path / name
        workdir.mkdir()
        if table is None:
            data = DataSettings(rows=rows, features=6, class_balance=class_balance, files=2)
        else:
            data = DataSettings(data=table, target=target, files=2)
        trained = train_and_package(data, workdir)
        model, metadata = load_model_archive(trained.archive)
        output = workdir / "output"
        output.mkdir()
        for file in trained.inputs.files:
            x = read_transform_input(trained.inputs.input_dir / file, metadata)
            (output / f"{file}.out").write_text("\n".join(str(v) for v in model.predict(x)))
        summary = RunSummary(
            mode="local",
            status="Completed",
            rows=trained.inputs.rows,
            files=len(trained.inputs.files),
            transform_seconds=0.25,
            parameters="text/csv, MultiRecord, 6 MiB payloads, 2 in flight",
            score=score_outputs(output, trained.inputs.manifest),
            training_metrics=trained.training_metrics,
            startup_seconds=6.5,
            artifacts={"run directory": str(workdir)},
        )
        return workdir, summary

    return make
