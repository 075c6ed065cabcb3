"""Bad input: a one-line 4xx naming the problem, never a 5xx, no crash, no memory growth.

Runs against a real `serve` subprocess (2 workers, 4-feature logistic pipeline).
"""

from __future__ import annotations

import json

import pytest
from servingkit import invocation_headers, rss_bytes

CSV = "text/csv"
JSON = "application/json"
JSONL = "application/jsonlines"
GOOD = b"1,2,3,4\n5,6,7,8\n"

# (case id, content type, accept, body, status, fragments of the message)
CASES = [
    ("empty csv", CSV, None, b"", 400, ["empty body"]),
    ("empty json", JSON, None, b"", 400, ["empty body"]),
    ("blank lines", CSV, None, b"\n\n \n", 400, ["empty body"]),
    ("blank line inside", CSV, None, b"1,2,3,4\n\n5,6,7,8\n", 400, ["line 2 is empty"]),
    (
        "short row",
        CSV,
        None,
        b"1,2,3,4\n1,2,3,4\n1,2,3\n",
        400,
        ["line 3 has 3 values, expected 4"],
    ),
    ("long row", CSV, None, b"1,2,3,4\n1,2,3,4,5\n", 400, ["line 2 has 5 values, expected 4"]),
    ("all rows short", CSV, None, b"1,2\n3,4\n", 400, ["line 1 has 2 values, expected 4"]),
    ("one huge line", CSV, None, b"1" * 1_000_000, 400, ["line 1 has 1 values, expected 4"]),
    ("non-numeric", CSV, None, b"1,2,3,4\n5,6,abc,8\n", 400, ["line 2, column 3", "'abc'"]),
    ("header line", CSV, None, b"a,b,c,d\n1,2,3,4\n", 400, ["line 1, column 1", "header"]),
    ("quoted field", CSV, None, b'1,"2,3",4\n', 400, ["line 1"]),
    ("semicolons", CSV, None, b"1;2;3;4\n", 400, ["line 1 has 1 values, expected 4"]),
    ("nul byte", CSV, None, b"1,2,\x00,4\n", 400, ["line 1, column 3"]),
    ("not utf-8", CSV, None, b"1,2,3,\xff\xfe\n", 400, ["not UTF-8"]),
    ("nan", CSV, None, b"1,2,3,4\n1,nan,3,4\n", 400, ["line 2, column 2 is missing (NaN)"]),
    ("empty field", CSV, None, b"1,,3,4\n", 400, ["line 1, column 2 is missing (NaN)"]),
    ("inf", CSV, None, b"1,2,3,inf\n", 400, ["line 1, column 4 is infinite"]),
    ("overflow", CSV, None, b"1,2,3,1e400\n", 400, ["line 1, column 4 is infinite"]),
    ("malformed json", JSON, None, b'{"instances": [[1,2,3,4]', 400, ["malformed JSON"]),
    ("json wrong key", JSON, None, b'{"inputs": [[1,2,3,4]]}', 400, ['"instances"']),
    ("json scalar", JSON, None, b"42", 400, ["list of rows"]),
    ("json flat list", JSON, None, b"[1,2,3,4]", 400, ["row 1 is not a list"]),
    ("json short row", JSON, None, b"[[1,2,3,4],[1,2,3]]", 400, ["row 2 has 3 values, expected 4"]),
    ("json string", JSON, None, b'[[1,2,"x",4]]', 400, ['row 1, column 3: "x" is not a number']),
    ("json null", JSON, None, b"[[1,2,null,4]]", 400, ["row 1, column 3 is missing (NaN)"]),
    ("json infinity", JSON, None, b"[[1,2,3,Infinity]]", 400, ["row 1, column 4 is infinite"]),
    ("json no rows", JSON, None, b'{"instances": []}', 400, ["no rows"]),
    ("jsonl malformed", JSONL, None, b"[1,2,3,4]\n[1,2,", 400, ["line 2: malformed JSON"]),
    ("jsonl object", JSONL, None, b'{"a": 1}\n', 400, ["line 1 is not a list"]),
    ("jsonl short", JSONL, None, b"[1,2,3,4]\n[1]\n", 400, ["line 2 has 1 values, expected 4"]),
    ("no content type", None, None, GOOD, 415, ["missing Content-Type"]),
    ("text/plain", "text/plain", None, GOOD, 415, ["unsupported Content-Type"]),
    ("latin-1", "text/csv; charset=latin-1", None, GOOD, 415, ["charset"]),
    ("accept html", CSV, "text/html", GOOD, 406, ["cannot answer with Accept"]),
    ("accept xml q", CSV, "application/xml, text/csv;q=0", GOOD, 406, ["Accept"]),
    ("bad proba", CSV, "text/csv; predict_proba=perhaps", GOOD, 400, ["predict_proba"]),
    ("binary junk", CSV, None, bytes(range(256)) * 8, 400, []),
]


def send(server, content_type, accept, body):
    headers = invocation_headers(content_type, accept)
    return server.client.post("/invocations", content=body, headers=headers)


@pytest.mark.parametrize(
    ("content_type", "accept", "body", "status", "fragments"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_gets_a_clear_4xx(binary_server, content_type, accept, body, status, fragments):
    workers = binary_server.worker_pids()
    response = send(binary_server, content_type, accept, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert text.endswith("\n") and "\n" not in text[:-1], "message must be one line"
    assert 10 < len(text) < 400
    for fragment in fragments:
        assert fragment in text, text
    # The worker that answered is still there, and the server still predicts.
    assert binary_server.worker_pids() == workers
    ok = send(binary_server, CSV, None, GOOD)
    assert ok.status_code == 200 and ok.text in ("0\n0", "0\n1", "1\n0", "1\n1")


def test_no_memory_growth_across_bad_requests(binary_server):
    """Thousands of rejected requests do not make the workers grow."""
    cases = [c for c in CASES if c[0] != "one huge line"]
    big_bad = b"1,2,3,4\n" * 40_000 + b"1,2,x,4\n"  # 320 kB parsed, then rejected

    def round_of_requests() -> None:
        for _, content_type, accept, body, status, _ in cases:
            assert send(binary_server, content_type, accept, body).status_code == status
        assert send(binary_server, CSV, None, big_bad).status_code == 400
        assert (
            send(binary_server, JSON, None, json.dumps([[1, 2, 3, 4]] * 2000).encode()).status_code
            == 200
        )

    def total_rss() -> int:
        return sum(rss_bytes(pid) for pid in binary_server.worker_pids())

    for _ in range(5):  # let allocator pools and caches reach their working size
        round_of_requests()
    before = total_rss()
    for _ in range(20):
        round_of_requests()
    after = total_rss()
    growth = after - before
    print(f"worker RSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    assert growth < 8 * 1024 * 1024, f"workers grew by {growth / 1e6:.1f} MB ({before} -> {after})"
