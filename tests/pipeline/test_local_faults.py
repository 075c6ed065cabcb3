"""Faults the runner must survive with a clear message (issue 12): crashing records,
model errors, a server that dies or hangs, a full disk, stale temporary files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from local_helpers import leftovers, transform, write_lines

from model.artifact import write_archive_bytes
from model.batch.assembly import remove_stale_temp_files, temp_files
from model.batch.client import MAX_CRASHES_PER_REQUEST
from model.batch.health import ServerWatch, group_cpu_ticks
from model.batch.local import ServerOptions, run_local_transform
from model.batch.params import TransformJobParameters
from model.batch.server import ServerError

pytestmark = pytest.mark.usefixtures("quick_retries")

FAKE = (sys.executable, str(Path(__file__).with_name("fake_server.py")))


def test_a_record_that_kills_its_worker_fails_only_its_file_after_two_deaths(tmp_path, fake_server):
    server = fake_server()
    for n in range(6):
        rows = [f"f{n}-{i},1" for i in range(100)]
        if n in (1, 4):
            rows[57] = f"f{n}-57,CRASH"
        write_lines(tmp_path / "in" / f"f{n}.csv", rows)
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=3)
    assert [f.relative for f in result.failed] == ["f1.csv", "f4.csv"]
    for failed in result.failed:
        assert failed.error == (
            f"{failed.relative}: lines 1-100: the model server's worker died 2 times on these "
            "records (the model server closed the connection without answering); a record in "
            "it crashes the model (segfault or out of memory?): see the server log"
        )
        assert failed.requests == MAX_CRASHES_PER_REQUEST  # not 1 + InvocationsMaxRetries
    for n in (0, 2, 3, 5):
        assert (tmp_path / "out" / f"f{n}.csv.out").read_text().splitlines() == [
            f"f{n}-{i}" for i in range(100)
        ]
    assert server.statuses.count(0) == 2 * MAX_CRASHES_PER_REQUEST
    assert leftovers(tmp_path) == []


def test_a_model_error_is_reported_with_the_servers_line_and_not_retried(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "b,MODEL", "c,3"])
    write_lines(tmp_path / "in" / "b.csv", ["d,1"])
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=3)
    assert result.failure_reason == (
        "1 of 2 input files failed: a.csv: lines 1-3: the model failed on these records "
        "(HTTP 500: model error in predict (2 rows): RuntimeError: boom); not retried, the same "
        "input fails the same way (traceback in the server log)"
    )
    assert server.statuses.count(500) == 1
    assert (tmp_path / "out" / "b.csv.out").read_text() == "d\n"


def test_an_unmarked_500_is_still_retried(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,BOOM"])
    transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=2)
    assert server.statuses == [500, 500, 500]


@pytest.fixture
def dummy_archive(tmp_path: Path) -> Path:
    return write_archive_bytes({"model.joblib": b"not used"}, tmp_path / "model.tar.gz")


def run_with_fault(tmp_path, archive, fault: signal.Signals, *, files: int = 8, hang: float = 30):
    """A local run on the stand-in server; ``fault`` is sent to its group once it runs."""
    for n in range(files):
        write_lines(tmp_path / "in" / f"f{n}.csv", [f"r{i},1" for i in range(40)])
    pids = tmp_path / "pids"
    job = TransformJobParameters(
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        InvocationsTimeoutInSeconds=5,
        Environment={"FAKE_PID_FILE": str(pids), "FAKE_DELAY": "0.02"},
    )

    def hurt_once_running(files, parameters):
        pid = int(pids.read_text().split()[0])
        threading.Timer(0.3, lambda: os.killpg(pid, fault)).start()

    started = time.monotonic()
    with pytest.raises(ServerError) as raised:
        run_local_transform(
            archive,
            tmp_path / "in",
            tmp_path / "out",
            job,
            server=ServerOptions(command=FAKE, hang_seconds=hang, log_path=tmp_path / "s.log"),
            on_start=hurt_once_running,
        )
    return str(raised.value), time.monotonic() - started


def test_a_server_that_dies_stops_the_run_at_once(tmp_path, dummy_archive):
    message, seconds = run_with_fault(tmp_path, dummy_archive, signal.SIGKILL)
    assert message.startswith("the model server exited (code -9) during the transform; ")
    assert "its last log lines: fake serve on port" in message
    assert "files were written before it; the others have no .out)" in message
    assert f"(full log: {tmp_path / 's.log'})" in message
    assert seconds < 5  # before: 8 files x 40 records x 4 attempts of a refused connection
    assert leftovers(tmp_path) == []


def test_a_hung_server_stops_the_run_after_the_hang_limit(tmp_path, dummy_archive):
    message, seconds = run_with_fault(tmp_path, dummy_archive, signal.SIGSTOP, hang=1.5)
    assert message.startswith(
        "the model server is hung: no answer, no /ping and no CPU use for "
    ), message
    assert "(limit 1.5 s, --hang-seconds)" in message
    # before: 8 files / 2 in flight x 4 attempts x InvocationsTimeoutInSeconds (5 s) = 80 s
    assert seconds < 10
    assert leftovers(tmp_path) == []


class _Busy:
    """A server that never answers pings but keeps burning CPU (a slow model)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def exit_code(self) -> int | None:
        return None

    def ping(self) -> bool:
        return False

    def log_tail(self, lines: int = 3) -> str:
        return ""


def test_a_busy_server_burning_cpu_is_not_hung():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        watch = ServerWatch(_Busy(spinner.pid), hang_seconds=1.0, ping_every=0.2)
        assert group_cpu_ticks(spinner.pid) is not None
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert watch.problem() is None
            time.sleep(0.3)
        spinner.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while (problem := watch.problem()) is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert problem.startswith("the model server is hung")
    finally:
        spinner.kill()
        spinner.wait()


def test_stale_temporary_files_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "out" / "sub"
    out.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = out / f".a.csv.out.{dead}.k2j3h4l5.tmp"
    old_style = out / ".b.csv.out.abc_1234.tmp"  # an older runner's name (no pid)
    live = out / f".c.csv.out.{os.getppid()}.zz99yy88.tmp"  # a run that is still going
    unrelated = out / ".notes.tmp"
    for path in (stale, old_style, live, unrelated):
        path.write_text("x")
    assert sorted(remove_stale_temp_files(tmp_path / "out")) == sorted([stale, old_style])
    assert live.exists() and unrelated.exists()
    assert temp_files(tmp_path / "out") == [live]


def test_a_full_disk_is_named_in_one_line(tmp_path, fake_server, monkeypatch):
    """Simulated ENOSPC (the tmpfs version is in test_local_cli: it needs root)."""
    import errno

    from model.batch import assembly

    real_put = assembly.AtomicOutput.put

    def put(self, index, data):
        if self.target.name == "b.csv.out":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(self, index, data)

    monkeypatch.setattr(assembly.AtomicOutput, "put", put)
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,1"])
    write_lines(tmp_path / "in" / "b.csv", ["b,1"])
    result = transform(server, tmp_path / "in", tmp_path / "out")
    (failed,) = result.failed
    assert failed.error.startswith(f"b.csv: no space left on device in {tmp_path / 'out'} (")
    assert failed.error.endswith("; free some space or choose another output directory")
    assert "OSError" not in failed.error
    assert leftovers(tmp_path) == []


def test_parquet_and_npy_files_are_sent_whole_with_their_content_type(tmp_path, fake_server):
    from model.batch.runner import discover_inputs, sniff_content_type

    server = fake_server()
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.parquet").write_bytes(b"PAR1" + b"\n\x00,1" * 500 + b"PAR1")
    (inputs / "big.parquet").write_bytes(b"PAR1" + b"\x00" * (1024 * 1024) + b"PAR1")
    content_type = sniff_content_type(discover_inputs(inputs))
    assert content_type == "application/x-parquet"
    result = transform(
        server,
        inputs,
        tmp_path / "out",
        ContentType=content_type,
        SplitType="None",
        MaxPayloadInMB=1,
    )
    assert server.requests == [(inputs / "a.parquet").read_bytes()]  # whole, unsplit
    assert server.headers[0]["Content-Type"] == "application/x-parquet"
    assert (tmp_path / "out" / "a.parquet.out").read_text() == "2008\n"
    assert result.failure_reason == (
        "1 of 2 input files failed: big.parquet: the file is 1.0 MiB (1,048,584 bytes), larger "
        "than MaxPayloadInMB (1 MiB): with SplitType None each file is sent whole in one "
        "request; raise MaxPayloadInMB (at most 100) or split the file"
    )
    (inputs / "c.npy").write_bytes(b"\x93NUMPY\x01\x00")
    with pytest.raises(
        Exception, match=r"the input mixes formats \(c.npy is application/x-npy, a.parquet is"
    ):
        sniff_content_type(discover_inputs(inputs))


DRIVER = Path(__file__).with_name("runner_driver.py")
REPO = Path(__file__).resolve().parents[2]
PAD = "x" * 480


def start_driver(inputs: Path, output: Path, delay: str = "0.05") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(inputs), str(output), delay],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@pytest.fixture
def many_inputs(tmp_path: Path) -> Path:
    inputs = tmp_path / "in"
    for n in range(4):
        write_lines(inputs / f"f{n}.csv", [f"f{n}-{i},{PAD}" for i in range(6000)])
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_an_interrupt_mid_run_leaves_no_debris_and_no_thread_traceback(
    tmp_path, many_inputs, sig, code, word
):
    output = tmp_path / "out"
    for delay in (0.0, 0.15, 0.4):  # early, middle and late in the run
        # 12 requests of 0.3 s, 2 in flight: ~1.8 s, so even the last signal lands mid-run
        # (at 0.05 s a request a quiet machine finished before it, and exited 0).
        process = start_driver(many_inputs, output, delay="0.3")
        try:
            deadline = time.monotonic() + 60
            while not temp_files(output) if output.exists() else True:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(delay)
            process.send_signal(sig)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == code, stderr
        assert stderr.strip().splitlines()[-1].startswith(f"{word}: "), stderr
        assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr
        assert leftovers(output) == []
        for path in output.glob("*.out"):  # finished before the signal: complete
            assert len(path.read_text().splitlines()) == 6000


@pytest.mark.slow
def test_a_rerun_removes_what_a_killed_run_left(tmp_path, many_inputs):
    output = tmp_path / "out"
    process = start_driver(many_inputs, output)
    try:
        deadline = time.monotonic() + 60
        while not output.exists() or not temp_files(output):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.kill()  # SIGKILL: nothing of the runner can clean up
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert leftovers(output)  # the debris a SIGKILL leaves
    rerun = subprocess.run(
        [sys.executable, str(DRIVER), str(many_inputs), str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert leftovers(output) == []
    assert sorted(p.name for p in output.iterdir()) == [f"f{n}.csv.out" for n in range(4)]


def test_a_full_disk_fails_the_files_that_do_not_fit_with_one_clear_line(
    tmp_path, fake_server, full_disk
):
    server = fake_server()
    inputs = tmp_path / "in"
    write_lines(inputs / "a-small.csv", [f"{PAD}{i},1" for i in range(100)])  # ~48 KiB out
    write_lines(inputs / "b-large.csv", [f"{PAD}{i},1" for i in range(5000)])  # ~2.4 MiB out
    result = transform(server, inputs, full_disk, MaxPayloadInMB=1)
    (failed,) = result.failed
    assert re.fullmatch(
        rf"b-large\.csv: no space left on device in {re.escape(str(full_disk))} \([\d.]+ "
        r"(bytes|KiB) free, writing b-large\.csv\.out\); free some space or choose another "
        r"output directory",
        failed.error,
    ), failed.error
    assert "OSError" not in failed.error and "unexpected" not in failed.error
    assert sorted(p.name for p in full_disk.iterdir()) == ["a-small.csv.out"]
    assert len((full_disk / "a-small.csv.out").read_text().splitlines()) == 100


def test_a_rejected_binary_file_is_named_whole_and_not_bisected(tmp_path, fake_server):
    server = fake_server()
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.npy").write_bytes(b"\x93NUMPY\n1,BAD\n2,3")
    result = transform(
        server, inputs, tmp_path / "out", ContentType="application/x-npy", SplitType="None"
    )
    assert server.requests == [(inputs / "a.npy").read_bytes()]  # one request, never split
    assert result.failure_reason == (
        "1 of 1 input files failed: a.npy: the whole file: the model server rejected the file "
        "(HTTP 400: cannot read the file as NPY)"
    )


def test_a_single_record_model_error_keeps_its_wording(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "b,MODEL"])
    result = transform(server, tmp_path / "in", tmp_path / "out", BatchStrategy="SingleRecord")
    assert result.failure_reason == (
        "1 of 1 input files failed: a.csv: line 2: the model failed on the record (HTTP 500: "
        "model error in predict (1 rows): RuntimeError: boom); not retried, the same input "
        "fails the same way (traceback in the server log)"
    )
    assert server.statuses.count(500) == 1
