"""The runner against a fake model server: order, concurrency, retries, failures, assembly."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from local_helpers import leftovers, transform, write_lines

from model.batch.runner import InputError, OutputError, discover_inputs, prepare_output_dir

pytestmark = pytest.mark.usefixtures("quick_retries")

MIB = 1_048_576
PAD = "x" * 480  # ~500-byte rows: 1 MiB holds about 2,000 of them


def padded_rows(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i},{PAD}" for i in range(count)]


def out_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_outputs_keep_input_order_with_requests_in_flight(tmp_path, fake_server):
    server = fake_server(delay=0.02)
    for n in range(3):
        write_lines(tmp_path / "in" / f"f{n}.csv", padded_rows(f"f{n}", 5000))
    result = transform(
        server, tmp_path / "in", tmp_path / "out", MaxPayloadInMB=1, MaxConcurrentTransforms=4
    )
    assert result.status == "Completed", result.failure_reason
    for n in range(3):
        assert out_lines(tmp_path / "out" / f"f{n}.csv.out") == [f"f{n}-{i}" for i in range(5000)]
    assert result.records == 15000
    assert 2 <= server.max_in_flight <= 4


def test_requests_fit_the_payload_limit_and_never_span_files(tmp_path, fake_server):
    server = fake_server()
    for n in range(3):
        write_lines(tmp_path / "in" / f"f{n}.csv", padded_rows(f"f{n}", 4500))
    transform(server, tmp_path / "in", tmp_path / "out", MaxPayloadInMB=1)
    assert len(server.requests) == 9  # 2,097 + 2,097 + 306 rows per file
    for body in server.requests:
        assert len(body) <= MIB
        files = {line.split(b"-", 1)[0] for line in body.split(b"\n")}
        assert len(files) == 1, files
    # Every request packs whole lines up to the limit: the next line would not fit.
    full = [b for b in server.requests if b.count(b"\n") + 1 > 1000]
    assert all(len(b) + 1 + len(b.split(b"\n")[0]) > MIB for b in full)


def test_single_record_sends_each_line_alone(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", [f"r{i},1" for i in range(50)])
    result = transform(server, tmp_path / "in", tmp_path / "out", BatchStrategy="SingleRecord")
    assert len(server.requests) == 50
    assert server.requests[:2] == [b"r0,1", b"r1,1"]
    assert out_lines(tmp_path / "out" / "a.csv.out") == [f"r{i}" for i in range(50)]
    assert result.files[0].requests == 50


def test_container_execution_parameters_apply_when_the_job_sets_none(tmp_path, fake_server):
    offered = {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}
    server = fake_server(delay=0.02)
    write_lines(tmp_path / "in" / "a.csv", [f"r{i},1" for i in range(30)])
    result = transform(server, tmp_path / "in", tmp_path / "out", offered=offered)
    assert result.parameters.describe() == "SingleRecord, 1 MiB payloads, 3 in flight"
    assert len(server.requests) == 30
    assert server.max_in_flight == 3


def test_server_errors_are_retried_until_they_pass(tmp_path, fake_server):
    server = fake_server(fail_first=3)
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "b,2"])
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=3)
    assert result.status == "Completed"
    assert server.statuses == [503, 503, 503, 200]
    assert out_lines(tmp_path / "out" / "a.csv.out") == ["a", "b"]


def test_retries_are_bounded_by_invocations_max_retries(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "good.csv", ["a,1"])
    write_lines(tmp_path / "in" / "sick.csv", ["a,1", "b,BOOM", "c,3"])
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=2)
    assert result.status == "Failed"
    assert server.statuses.count(500) == 3  # the first attempt and two retries
    assert result.failure_reason == (
        "1 of 2 input files failed: sick.csv: lines 1-3: the model server failed after "
        "3 attempts (HTTP 500: internal error)"
    )
    assert (tmp_path / "out" / "good.csv.out").read_text() == "a\n"
    assert not (tmp_path / "out" / "sick.csv.out").exists()


def test_no_retries_when_set_to_zero(tmp_path, fake_server):
    server = fake_server(fail_first=1)
    write_lines(tmp_path / "in" / "a.csv", ["a,1"])
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=0)
    assert result.status == "Failed"
    assert server.statuses == [503]
    assert "after 1 attempt (HTTP 503: warming up)" in (result.failure_reason or "")


def test_a_rejected_record_is_not_retried_and_is_named_by_line(tmp_path, fake_server):
    server = fake_server()
    rows = [f"r{i},1" for i in range(2000)]
    rows[1233] = "r1233,BAD"
    write_lines(tmp_path / "in" / "sub" / "bad.csv", rows)
    write_lines(tmp_path / "in" / "ok.csv", ["a,1"])
    result = transform(server, tmp_path / "in", tmp_path / "out", InvocationsMaxRetries=3)
    assert result.status == "Failed"
    (failed,) = result.failed
    assert failed.error == (
        "sub/bad.csv: line 1234: the model server rejected the record "
        "(HTTP 400: row 1234: could not convert a value to float)"
    )
    whole = "\n".join(rows).encode()
    assert server.requests.count(whole) == 1  # a 4xx is never sent again
    assert len(server.requests) <= 2 + 2 * 11  # the bisection stays logarithmic
    assert not (tmp_path / "out" / "sub").exists()  # nothing left for the failed file
    assert (tmp_path / "out" / "ok.csv.out").exists()


def test_a_failed_file_removes_a_stale_out_and_leaves_no_temp_files(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "bad.csv", ["a,BAD"])
    stale = write_lines(tmp_path / "out" / "bad.csv.out", ["old"])
    result = transform(server, tmp_path / "in", tmp_path / "out")
    assert result.status == "Failed"
    assert not stale.exists()
    assert leftovers(tmp_path) == []


def test_record_larger_than_the_payload_limit_fails_only_its_file(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "big.csv", ["a,1", "b," + "9" * (MIB + 10), "c,3"])
    write_lines(tmp_path / "in" / "small.csv", ["a,1"])
    result = transform(server, tmp_path / "in", tmp_path / "out", MaxPayloadInMB=1)
    assert result.failure_reason == (
        "1 of 2 input files failed: big.csv: line 2: the record is larger than MaxPayloadInMB "
        "(1 MiB = 1,048,576 bytes); raise MaxPayloadInMB or split the record"
    )
    assert not (tmp_path / "out" / "big.csv.out").exists()
    assert (tmp_path / "out" / "small.csv.out").read_text() == "a\n"


def test_an_empty_file_gives_an_empty_out(tmp_path, fake_server):
    server = fake_server()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.csv").write_bytes(b"")
    result = transform(server, tmp_path / "in", tmp_path / "out")
    assert result.status == "Completed"
    assert (tmp_path / "out" / "empty.csv.out").read_bytes() == b""
    assert server.requests == []


def test_an_answer_with_the_wrong_number_of_lines_fails_the_file(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "b,DROP", "c,3"])
    result = transform(server, tmp_path / "in", tmp_path / "out")
    assert "answered 2 lines for the 3 records of lines 1-3" in (result.failure_reason or "")
    assert not (tmp_path / "out" / "a.csv.out").exists()


def test_a_blank_line_the_server_skipped_is_named(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["a,1", "", "c,3", ""])
    result = transform(server, tmp_path / "in", tmp_path / "out")
    assert result.failure_reason == (
        "1 of 1 input files failed: a.csv: line 2: the model server answered 2 lines for the "
        "3 records of lines 1-3; each record needs exactly one output line (line 2 is empty: "
        "remove blank lines)"
    )


def test_join_source_with_input_and_output_filters(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["id1,10,11", "id2,20,21"])
    result = transform(
        server,
        tmp_path / "in",
        tmp_path / "out",
        InputFilter="$[1:]",
        JoinSource="Input",
        OutputFilter="$[0,-1]",
    )
    assert result.status == "Completed"
    assert server.requests == [b"10,11\n20,21"]  # the id column never reached the model
    assert out_lines(tmp_path / "out" / "a.csv.out") == ["id1,10", "id2,20"]


def test_join_source_alone_appends_the_prediction_to_the_input_row(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["7,1", "8,2"], end="\r\n")
    transform(server, tmp_path / "in", tmp_path / "out", JoinSource="Input")
    assert out_lines(tmp_path / "out" / "a.csv.out") == ["7,1,7", "8,2,8"]


def test_output_filter_out_of_range_names_the_line(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", ["7,1", "8,2"])
    result = transform(server, tmp_path / "in", tmp_path / "out", OutputFilter="$[3]")
    assert result.failure_reason == (
        "1 of 1 input files failed: a.csv: line 1: OutputFilter: $[3] selects column 3, "
        "but the row has 1 columns"
    )


def test_outputs_are_never_visible_half_written(tmp_path, fake_server):
    server = fake_server(delay=0.01)
    for n in range(3):
        write_lines(tmp_path / "in" / f"f{n}.csv", padded_rows(f"f{n}", 6000))
    seen_partial: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in (tmp_path / "out").glob("*.out"):
                lines = path.read_text().count("\n")
                if lines != 6000:
                    seen_partial.append(f"{path.name}: {lines}")
            time.sleep(0.002)

    (tmp_path / "out").mkdir()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = transform(server, tmp_path / "in", tmp_path / "out", MaxPayloadInMB=1)
    finally:
        done.set()
        watcher.join()
    assert result.status == "Completed"
    assert seen_partial == []
    assert leftovers(tmp_path) == []
    assert oct((tmp_path / "out" / "f0.csv.out").stat().st_mode & 0o777) != oct(0o600)


def test_ctrl_c_leaves_no_partial_output(tmp_path, fake_server):
    server = fake_server(delay=0.2)
    for n in range(2):
        write_lines(tmp_path / "in" / f"f{n}.csv", padded_rows(f"f{n}", 5000))
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            transform(server, tmp_path / "in", tmp_path / "out", MaxPayloadInMB=1)
    finally:
        timer.cancel()
    assert list((tmp_path / "out").glob("*.out")) == []
    assert leftovers(tmp_path) == []


def test_progress_reports_every_record(tmp_path, fake_server):
    server = fake_server()
    write_lines(tmp_path / "in" / "a.csv", padded_rows("a", 3000))
    seen = []
    transform(
        server,
        tmp_path / "in",
        tmp_path / "out",
        MaxPayloadInMB=1,
        on_progress=lambda records, nbytes: seen.append((records, nbytes)),
    )
    assert sum(r for r, _ in seen) == 3000
    assert sum(b for _, b in seen) == (tmp_path / "in" / "a.csv").stat().st_size


def test_inputs_are_found_recursively_in_order_and_the_output_tree_is_skipped(tmp_path):
    write_lines(tmp_path / "b.csv", ["1"])
    write_lines(tmp_path / "a" / "z.csv", ["1"])
    write_lines(tmp_path / "a" / "b" / "c.csv", ["1"])
    write_lines(tmp_path / "out" / "b.csv.out", ["1"])
    found = [f.relative for f in discover_inputs(tmp_path, tmp_path / "out")]
    assert found == ["a/b/c.csv", "a/z.csv", "b.csv"]


def test_input_and_output_problems_are_explained(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_inputs(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="holds no files"):
        discover_inputs(tmp_path / "empty")
    with pytest.raises(InputError, match="output directory is the input directory"):
        discover_inputs(tmp_path / "empty", tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not writable"):
        prepare_output_dir(tmp_path / "file" / "out")
