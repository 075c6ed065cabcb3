"""scripts/local_transform.py with the real `serve`: bad input, failures, Ctrl-C, clean-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from local_helpers import leftovers, no_processes_with_marker, processes_with_marker, write_lines

from model.artifact import write_archive_bytes, write_model_archive
from model.data import generate_dataset, write_csv
from model.train import build_metadata, train_model

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local_transform.py"
FEATURES = 5


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = generate_dataset(rows=1000, features=FEATURES, seed=5)
    trained = train_model(data.x_train, data.y_train, data.x_eval, data.y_eval)
    path = tmp_path_factory.mktemp("model") / "model.tar.gz"
    return write_model_archive(trained.pipeline, build_metadata(trained), path)


def run_script(*args: object, marker: str | None = None, timeout: float = 180):
    command = [sys.executable, str(SCRIPT), "--no-progress", "--workers", "1"]
    command += [str(a) for a in args]
    if marker:
        command += ["--env", f"LOCAL_TEST_MARKER={marker}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if lines and lines[0] == "starting the model server...":  # the checks before it passed
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def good_input(tmp_path: Path) -> Path:
    data = generate_dataset(rows=1000, features=FEATURES, seed=6)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_csv(data.x_transform, inputs / "good.csv")
    return inputs


def test_missing_model(tmp_path, good_input):
    result = run_script(
        "--model", tmp_path / "nope.tar.gz", "--input", good_input, "--output", tmp_path / "out"
    )
    assert_one_line_error(result, "nope.tar.gz does not exist")
    assert not (tmp_path / "out").exists()


def test_corrupt_model(tmp_path, good_input):
    (tmp_path / "model.tar.gz").write_bytes(b"\x1f\x8b garbage")
    result = run_script(
        "--model", tmp_path / "model.tar.gz", "--input", good_input, "--output", tmp_path / "out"
    )
    assert_one_line_error(result, "is not a readable .tar.gz")
    assert not (tmp_path / "out").exists()


def test_archive_without_model_joblib(tmp_path, good_input):
    path = write_archive_bytes({"readme.txt": b"hi"}, tmp_path / "model.tar.gz")
    result = run_script("--model", path, "--input", good_input, "--output", tmp_path / "out")
    assert_one_line_error(result, "has no model.joblib at its root (found: readme.txt)")


def test_archive_with_a_model_pkl_is_told_to_rename_it(tmp_path, good_input):
    path = write_archive_bytes({"model.pkl": b"x"}, tmp_path / "model.tar.gz")
    result = run_script("--model", path, "--input", good_input, "--output", tmp_path / "out")
    assert_one_line_error(
        result,
        "has no model.joblib at its root (found: model.pkl)",
        "rename model.pkl to model.joblib and pack the archive again",
    )
    assert "inside a folder" not in result.stderr


def test_archive_with_model_joblib_in_a_folder_is_told_how_to_pack_it(tmp_path, good_input):
    path = write_archive_bytes({"m/model.joblib": b"x"}, tmp_path / "model.tar.gz")
    result = run_script("--model", path, "--input", good_input, "--output", tmp_path / "out")
    assert_one_line_error(result, "must not be inside a folder", "tar -C FOLDER")


def test_a_bare_model_joblib_is_accepted(tmp_path, archive, good_input):
    from model.artifact import unpack_model_archive

    bare = unpack_model_archive(archive, tmp_path / "unpacked") / "model.joblib"
    result = run_script("--model", bare, "--input", good_input, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out" / "good.csv.out").read_text().splitlines()) == 200
    lines = result.stderr.splitlines()
    assert lines[0] == "starting the model server..."  # 8-20 s of silence otherwise
    assert lines[1].startswith("model server ready in ") and lines[1].endswith(" s")


def test_a_start_up_error_names_the_users_model_not_a_deleted_copy(tmp_path, good_input):
    from sklearn.svm import LinearSVC

    from model.artifact import dump_model

    data = generate_dataset(rows=300, features=FEATURES, seed=9)
    model = LinearSVC().fit(data.x_train, data.y_train)  # no predict_proba
    path = write_archive_bytes({"model.joblib": dump_model(model)}, tmp_path / "svc.tar.gz")
    result = run_script(
        "--model", path, "--input", good_input, "--output", tmp_path / "out",
        "--env", "SERVING_PREDICT_PROBA=true",
    )  # fmt: skip
    assert_one_line_error(result, f"the model in {path}", "has no predict_proba")
    assert "/model-" not in result.stderr.split("(full log:")[0]  # no temporary directory


def test_missing_and_empty_input(tmp_path, archive):
    result = run_script(
        "--model", archive, "--input", tmp_path / "none", "--output", tmp_path / "out"
    )
    assert_one_line_error(result, "does not exist")
    (tmp_path / "empty").mkdir()
    result = run_script(
        "--model", archive, "--input", tmp_path / "empty", "--output", tmp_path / "out"
    )
    assert_one_line_error(result, "holds no files")


def test_output_not_writable(tmp_path, archive, good_input):
    (tmp_path / "file").write_text("x")
    result = run_script(
        "--model", archive, "--input", good_input, "--output", tmp_path / "file" / "out"
    )
    assert_one_line_error(result, "is not writable")


def test_port_in_use(tmp_path, archive, good_input):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_script(
            "--model", archive, "--input", good_input, "--output", tmp_path / "out", "--port", port
        )
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--MaxPayloadInMB", "200"], "MaxPayloadInMB must be between 1 and 100"),
        (["--max-concurrent-transforms", "20"], "20 x 6 = 120"),
        (["--InputFilter", "$.features"], "name-based paths apply to JSON input"),
        (["--env", "no-equals"], "use KEY=VALUE"),
    ],
)
def test_job_parameters_sagemaker_would_refuse(tmp_path, archive, good_input, options, fragment):
    result = run_script(
        "--model", archive, "--input", good_input, "--output", tmp_path / "out", *options
    )
    assert_one_line_error(result, fragment)


def test_unloadable_model_stops_at_start_up_with_the_servers_reason(tmp_path, good_input):
    path = write_archive_bytes({"model.joblib": b"not a pickle"}, tmp_path / "model.tar.gz")
    marker = uuid.uuid4().hex
    log = tmp_path / "serve.log"
    result = run_script(
        "--model", path, "--input", good_input, "--output", tmp_path / "out",
        "--server-log", log, marker=marker,
    )  # fmt: skip
    assert_one_line_error(result, "serve exited with code", "before it was ready", "model.joblib")
    assert f"(full log: {log})" in result.stderr
    assert no_processes_with_marker(marker)


def test_failed_files_do_not_stop_the_others_and_nothing_is_left_behind(tmp_path, archive):
    data = generate_dataset(rows=3000, features=FEATURES, seed=7)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_csv(data.x_transform, inputs / "good.csv")
    (inputs / "empty.csv").write_bytes(b"")
    write_lines(inputs / "nested" / "wrong.csv", ["1,2,3,4", "1,2,3,4"])  # 4 features, not 5
    write_lines(inputs / "bad.csv", ["1,2,3,4,5", "1,2,3,4,5", "1,2,x,4,5", "1,2,3,4,5"])
    marker = uuid.uuid4().hex
    result = run_script(
        "--model", archive, "--input", inputs, "--output", tmp_path / "out", marker=marker
    )
    assert result.returncode == 1, result.stderr
    assert "Batch transform (local): Failed" in result.stdout
    assert "2 of 4 input files failed" in result.stdout
    assert "bad.csv: line 3:" in result.stdout
    assert "nested/wrong.csv: line" in result.stdout
    # serve's log is kept and named: it holds what the server said about the failures
    (log_line,) = [line for line in result.stdout.splitlines() if "server log" in line]
    log = Path(log_line.split()[-1])
    assert log.is_file() and "serving" in log.read_text()
    log.unlink()
    out = tmp_path / "out"
    assert len((out / "good.csv.out").read_text().splitlines()) == 600
    assert (out / "empty.csv.out").read_bytes() == b""
    assert not (out / "bad.csv.out").exists()
    assert not (out / "nested").exists()
    assert leftovers(tmp_path) == []
    assert no_processes_with_marker(marker)


def test_ctrl_c_stops_the_server_and_leaves_no_partial_output(tmp_path, archive):
    data = generate_dataset(rows=20000, features=FEATURES, seed=8)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(4):
        write_csv(data.x_transform, inputs / f"f{n}.csv")  # 4,000 rows each
    marker = uuid.uuid4().hex
    command = [
        sys.executable, str(SCRIPT), "--no-progress", "--workers", "1",
        "--model", str(archive), "--input", str(inputs), "--output", str(tmp_path / "out"),
        "--BatchStrategy", "SingleRecord", "--env", f"LOCAL_TEST_MARKER={marker}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out").glob(".*.tmp")):  # the transform has begun
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert processes_with_marker(marker)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert no_processes_with_marker(marker)
    assert leftovers(tmp_path) == []
    for path in (tmp_path / "out").glob("*.out"):  # finished before Ctrl-C: complete
        assert len(path.read_text().splitlines()) == 4000


def test_sigterm_is_handled_like_ctrl_c(tmp_path, archive, good_input):
    marker = uuid.uuid4().hex
    command = [
        sys.executable, str(SCRIPT), "--no-progress", "--workers", "1",
        "--model", str(archive), "--input", str(good_input), "--output", str(tmp_path / "out"),
        "--env", f"LOCAL_TEST_MARKER={marker}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not processes_with_marker(marker):  # serve is starting
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert no_processes_with_marker(marker)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parquet", "npy"])
def test_parquet_and_npy_inputs_are_sent_whole_and_answered_like_csv(tmp_path, archive, kind):
    import numpy as np
    import pandas as pd

    data = generate_dataset(rows=1000, features=FEATURES, seed=6)
    rows = np.asarray(data.x_transform)
    inputs = tmp_path / "in"
    inputs.mkdir()
    if kind == "parquet":
        pd.DataFrame(rows).rename(columns=str).to_parquet(inputs / "a.parquet")
    else:
        np.save(inputs / "a.npy", rows)
    result = run_script("--model", archive, "--input", inputs, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    media = "application/x-parquet" if kind == "parquet" else "application/x-npy"
    assert f"{media}, whole files (SplitType None)" in result.stdout
    assert "200 transformed from 1 file" in result.stdout
    from model.artifact import load_model_archive

    model, _ = load_model_archive(archive)
    expected = [str(label) for label in model.predict(rows).tolist()]
    assert (tmp_path / "out" / f"a.{kind}.out").read_text().splitlines() == expected
