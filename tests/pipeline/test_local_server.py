"""Starting and always stopping the server process (with a stand-in `serve` script)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from local_helpers import leftovers, write_lines

from model.artifact import write_archive_bytes
from model.batch.local import ServerOptions, run_local_transform
from model.batch.params import TransformJobParameters
from model.batch.server import PortInUseError, ServeProcess, ServerError

FAKE = [sys.executable, str(Path(__file__).with_name("fake_server.py"))]


def group_is_gone(pgid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def pid_is_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie still answers kill(0); it is gone once its state is Z or X.
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_server_is_configured_like_sagemaker_and_its_whole_group_stopped(tmp_path):
    env_dump = tmp_path / "env.json"
    pids = tmp_path / "pids"
    server = ServeProcess(
        tmp_path / "model",
        workers=3,
        environment={
            "FAKE_DUMP_ENV": str(env_dump),
            "FAKE_CHILD": "1",
            "FAKE_PID_FILE": str(pids),
            "SAGEMAKER_BATCH": "true",
            "FAKE_EXECUTION_PARAMETERS": json.dumps({"MaxConcurrentTransforms": 3}),
        },
        log_path=tmp_path / "serve.log",
        command=FAKE,
    )
    with server:
        assert server.is_running()
        assert server.execution_parameters() == {"MaxConcurrentTransforms": 3}
        pgid = server.pid
        env = json.loads(env_dump.read_text())
    assert env["MODEL_DIR"] == str(tmp_path / "model")
    assert env["SAGEMAKER_BIND_TO_PORT"] == str(server.port)
    assert env["SERVING_HOST"] == "127.0.0.1"
    assert env["SERVING_WORKERS"] == "3"
    assert env["SAGEMAKER_BATCH"] == "true"
    _, child = (int(p) for p in pids.read_text().split())
    assert group_is_gone(pgid)
    assert pid_is_gone(child)
    assert "fake serve on port" in (tmp_path / "serve.log").read_text()


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    server = ServeProcess(
        tmp_path, environment={"FAKE_IGNORE_TERM": "1"}, command=FAKE, stop_grace=0.5
    )
    server.start()
    pgid = server.pid
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert group_is_gone(pgid)


def test_a_port_in_use_is_refused_before_starting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            ServeProcess(tmp_path, port=port, command=FAKE).start()


def test_a_server_that_exits_early_is_explained_with_its_last_words(tmp_path):
    command = [
        sys.executable,
        "-c",
        "import sys; print('serve: error: /m/model.joblib not found', file=sys.stderr); "
        "sys.exit(1)",
    ]
    with pytest.raises(ServerError) as raised:
        ServeProcess(tmp_path, command=command, log_path=tmp_path / "log").start()
    assert str(raised.value).startswith(
        "serve exited with code 1 before it was ready: serve: error: /m/model.joblib not found"
    )


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    pid_file = tmp_path / "pid"
    command = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    with pytest.raises(ServerError, match=r"did not answer /ping within 1 s"):
        ServeProcess(tmp_path, command=command, startup_timeout=1).start()
    assert pid_is_gone(int(pid_file.read_text()))


def test_a_lost_port_race_is_retried_on_another_free_port(tmp_path):
    marker = tmp_path / "tried"
    script = (
        "import os, runpy, sys\n"
        f"marker = {str(marker)!r}\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    print('[Errno 98] error while attempting to bind: address already in use',"
        " file=sys.stderr)\n"
        "    sys.exit(1)\n"
        f"sys.argv = [{FAKE[1]!r}]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    server = ServeProcess(
        tmp_path, command=[sys.executable, "-c", script], log_path=tmp_path / "log"
    )
    with server:
        assert server.is_running()
    assert marker.exists()


@pytest.fixture
def dummy_archive(tmp_path: Path) -> Path:
    """An archive the stand-in server accepts (it never loads the model)."""
    return write_archive_bytes({"model.joblib": b"not used"}, tmp_path / "model.tar.gz")


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tempfile puts things during the test (to find temporary server logs)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_local_transform_stops_the_server_after_success_and_failure(
    tmp_path, dummy_archive, temp_dir
):
    pids = tmp_path / "pids"
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "b,2"])
    write_lines(tmp_path / "in" / "b.csv", ["c,BAD"])
    result = run_local_transform(
        dummy_archive,
        tmp_path / "in",
        tmp_path / "out",
        TransformJobParameters(Environment={"FAKE_PID_FILE": str(pids), "FAKE_CHILD": "1"}),
        server=ServerOptions(command=tuple(FAKE)),
    )
    assert result.transform.status == "Failed"
    assert (tmp_path / "out" / "a.csv.out").read_text() == "a\nb\n"
    server_pid, child = (int(p) for p in pids.read_text().split())
    assert group_is_gone(server_pid)
    assert pid_is_gone(child)
    # The model directory is removed; a failed run keeps the log (the model's tracebacks).
    assert list(temp_dir.iterdir()) == [result.server_log]
    assert "fake serve on port" in result.server_log.read_text()
    write_lines(tmp_path / "in" / "b.csv", ["c,1"])
    result.server_log.unlink()
    result = run_local_transform(
        dummy_archive,
        tmp_path / "in",
        tmp_path / "out",
        TransformJobParameters(),
        server=ServerOptions(command=tuple(FAKE)),
    )
    assert result.transform.status == "Completed"
    assert result.server_log is None
    assert list(temp_dir.iterdir()) == []  # a run that succeeded leaves no log behind


def test_a_start_up_failure_keeps_the_temporary_log_it_names(tmp_path, dummy_archive, temp_dir):
    write_lines(tmp_path / "in" / "a.csv", ["a,1"])
    command = (sys.executable, "-c", "import sys; sys.exit('serve: error: no model')")
    with pytest.raises(ServerError) as raised:
        run_local_transform(
            dummy_archive,
            tmp_path / "in",
            tmp_path / "out",
            TransformJobParameters(),
            server=ServerOptions(command=command),
        )
    (log,) = temp_dir.glob("serve-*.log")
    assert str(raised.value) == (
        f"serve exited with code 1 before it was ready: serve: error: no model (full log: {log})"
    )


def test_local_transform_stops_the_server_on_ctrl_c(tmp_path, dummy_archive, temp_dir):
    pids = tmp_path / "pids"
    for n in range(3):
        write_lines(tmp_path / "in" / f"f{n}.csv", [f"r{i},1" for i in range(50)])
    job = TransformJobParameters(
        BatchStrategy="SingleRecord",
        Environment={"FAKE_PID_FILE": str(pids), "FAKE_DELAY": "0.05"},
    )

    def interrupt_once_running(files, parameters):
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        return None

    with pytest.raises(KeyboardInterrupt):
        run_local_transform(
            dummy_archive,
            tmp_path / "in",
            tmp_path / "out",
            job,
            server=ServerOptions(command=tuple(FAKE)),
            on_start=interrupt_once_running,
        )
    server_pid, _ = (int(p) for p in pids.read_text().split())
    assert group_is_gone(server_pid)
    assert list((tmp_path / "out").glob("*.out")) == []
    assert leftovers(tmp_path) == []
    assert list(temp_dir.iterdir()) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_the_start_up_ticker_says_what_is_happening_while_serve_starts(tty):
    from model.batch.progress import StartupTicker

    stream = _Terminal() if tty else io.StringIO()
    seen = []
    with StartupTicker(stream, interval=0.05) as ticker:
        ticker.begin()
        time.sleep(0.3)
        ticker.then(lambda files, parameters: seen.append(files))(["f"], None)
    text = stream.getvalue()
    assert text.startswith("starting the model server...")
    assert re.search(r"model server ready in \d+\.\d s\n$", text), text
    assert seen == [["f"]]
    if tty:
        assert "\rstarting the model server... 0 s" in text  # ticks in place
    else:
        assert text.splitlines()[0] == "starting the model server..."
        assert len(text.splitlines()) == 2


def test_the_start_up_ticker_is_silent_when_serve_was_never_launched():
    from model.batch.progress import StartupTicker

    stream = io.StringIO()
    with StartupTicker(stream):
        pass  # e.g. a missing model archive: nothing was started
    assert stream.getvalue() == ""
