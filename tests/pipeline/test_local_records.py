"""Batching: payload limits, whole records in order, SingleRecord vs MultiRecord, bad records."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.batch.jsonpath import parse_filter
from model.batch.records import (
    Batch,
    RecordError,
    iter_batches,
    iter_batches_by_line,
    iter_batches_fast,
)

# Records: text without newlines; now and then a blank one ("" or "\r").
record = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=40,
    ).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"", b"\r"]),
)
records_lists = st.lists(record, min_size=0, max_size=60)


def as_file(records: list[bytes], trailing: bytes = b"\n") -> io.BytesIO:
    return io.BytesIO(b"\n".join(records) + (trailing if records else b""))


def without_trailing_blanks(records: list[bytes]) -> list[bytes]:
    """Blank lines that end a file are not records."""
    kept = list(records)
    while kept and kept[-1] in (b"", b"\r"):
        kept.pop()
    return kept


def fast(data: bytes, limit: int) -> list[Batch]:
    return list(iter_batches_fast(io.BytesIO(data), limit))


def by_line(data: bytes, limit: int, single: bool = False) -> list[Batch]:
    return list(iter_batches_by_line(io.BytesIO(data), limit, single_record=single))


def records_of(batches: list[Batch]) -> list[bytes]:
    return [r for b in batches for r in b.payload.split(b"\n")]


@settings(max_examples=300, deadline=None)
@given(records=records_lists, limit=st.integers(min_value=40 * 4, max_value=600))
def test_multirecord_payloads_fit_hold_whole_records_in_order(records, limit):
    data = as_file(records).getvalue()
    batches = fast(data, limit)
    # nothing split, dropped or reordered
    assert records_of(batches) == without_trailing_blanks(records)
    assert all(len(b.payload) <= limit for b in batches)
    # Greedy packing: the next record would not have fitted into the batch.
    for batch, following in itertools.pairwise(batches):
        first_next = following.payload.split(b"\n")[0]
        assert len(batch.payload) + 1 + len(first_next) > limit
    # Line numbers and indexes are consecutive.
    line = 1
    for index, batch in enumerate(batches):
        assert batch.index == index
        assert batch.first_line == line
        assert batch.records == len(batch.payload.split(b"\n"))
        line += batch.records


@settings(max_examples=300, deadline=None)
@given(
    records=records_lists,
    limit=st.integers(min_value=1, max_value=400),
    trailing=st.sampled_from([b"", b"\n", b"\n\n", b"\r\n", b"\n\r\n\n"]),
)
def test_fast_path_and_per_line_path_cut_identically(records, limit, trailing):
    data = as_file(records, trailing).getvalue()
    try:
        expected = [(b.first_line, b.records, b.payload) for b in by_line(data, limit)]
    except RecordError as error:
        with pytest.raises(RecordError) as raised:
            fast(data, limit)
        assert raised.value.line == error.line
        return
    assert [(b.first_line, b.records, b.payload) for b in fast(data, limit)] == expected


@settings(max_examples=100, deadline=None)
@given(records=records_lists)
def test_single_record_sends_one_record_per_request(records):
    data = as_file(records).getvalue()
    batches = by_line(data, 1000, single=True)
    expected = without_trailing_blanks(records)
    assert [b.payload for b in batches] == expected
    assert [b.first_line for b in batches] == list(range(1, len(expected) + 1))
    assert all(b.records == 1 for b in batches)


def test_small_reads_do_not_change_the_cut(monkeypatch):
    """Block boundaries fall anywhere; cuts must not depend on them."""
    import model.batch.records as records_module

    data = b"\n".join(f"{i},{'x' * (i % 17)}".encode() for i in range(500)) + b"\n"
    expected = [(b.first_line, b.payload) for b in fast(data, 97)]
    monkeypatch.setattr(records_module, "_READ_BLOCK", 1)
    assert [(b.first_line, b.payload) for b in fast(data, 97)] == expected


def test_exact_fit_and_one_byte_over():
    data = b"aaaa\nbbbb\ncccc\n"
    assert [b.payload for b in fast(data, 9)] == [b"aaaa\nbbbb", b"cccc"]
    assert [b.payload for b in fast(data, 8)] == [b"aaaa", b"bbbb", b"cccc"]
    assert [b.payload for b in fast(data, 14)] == [b"aaaa\nbbbb\ncccc"]


def test_mib_limit_is_counted_in_bytes():
    line = b"1" * 1023  # 1 KiB with its newline
    data = (line + b"\n") * 3000  # ~2.9 MiB
    batches = fast(data, 1 * 1024 * 1024)
    assert all(len(b.payload) <= 1_048_576 for b in batches)
    assert [b.records for b in batches] == [1024, 1024, 952]


def test_record_larger_than_the_limit_fails_with_its_line():
    data = b"ok\nok\n" + b"x" * 50 + b"\nok\n"
    for batches in (lambda: fast(data, 20), lambda: by_line(data, 20)):
        with pytest.raises(RecordError, match=r"line 3: the record is larger than MaxPayloadInMB"):
            batches()


def test_blank_lines_between_records_are_records_and_trailing_ones_are_not():
    for run in (fast, by_line):
        assert records_of(run(b"a\nb\n\n\r\n\n", 100)) == [b"a", b"b"]
        assert records_of(run(b"a\n\nb\n", 100)) == [b"a", b"", b"b"]
        assert records_of(run(b"\na\n", 100)) == [b"", b"a"]


def test_crlf_records_keep_their_carriage_return_consistently():
    data = b"a,1\r\nb,2\r\n"
    assert fast(data, 100)[0].payload == by_line(data, 100)[0].payload == b"a,1\r\nb,2\r"


def test_empty_file_gives_no_batches():
    assert fast(b"", 10) == []
    assert by_line(b"", 10) == []
    assert fast(b"\n\n", 10) == []


def test_input_filter_is_applied_before_packing_and_keeps_the_original():
    data = b"id1,1,2\nid2,3,4\nid3,5,6\n"
    batches = list(
        iter_batches(
            io.BytesIO(data),
            limit=7,
            split_type="Line",
            batch_strategy="MultiRecord",
            row_filter=parse_filter("$[1:]", parameter="InputFilter"),
        )
    )
    # "1,2\n3,4" is 7 bytes: filtered records are what the limit counts.
    assert [b.payload for b in batches] == [b"1,2\n3,4", b"5,6"]
    assert [b.source for b in batches] == [b"id1,1,2\nid2,3,4", b"id3,5,6"]


def test_input_filter_outside_the_row_names_the_line():
    data = b"1,2\n3\n"
    with pytest.raises(RecordError, match=r"line 2: InputFilter: \$\[1\] selects column 1"):
        list(
            iter_batches(
                io.BytesIO(data),
                limit=100,
                split_type="Line",
                batch_strategy="SingleRecord",
                row_filter=parse_filter("$[1]", parameter="InputFilter"),
            )
        )


def test_split_type_none_sends_the_whole_file():
    data = b"1,2\n3,4\n"
    (batch,) = iter_batches(io.BytesIO(data), limit=100, split_type="None", batch_strategy="")
    assert batch.payload == data and batch.records == 2
    with pytest.raises(RecordError, match=r"the file is .* \(8 bytes\), larger than MaxPay"):
        list(iter_batches(io.BytesIO(data), limit=4, split_type="None", batch_strategy=""))
    (binary,) = iter_batches(
        io.BytesIO(b"PAR1\n\n..PAR1"), limit=100, split_type="None", batch_strategy="", binary=True
    )
    assert binary.records == 0  # no lines in a binary file: the answer's are counted
