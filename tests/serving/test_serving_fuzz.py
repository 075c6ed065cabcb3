"""Property-based fuzz of /invocations: whatever the body and headers, never a 5xx.

Bodies range from raw bytes to near-valid CSV, JSON and JSON Lines (the shapes
most likely to reach deep into the parsers); headers from valid media types to
random printable text. After every example the server must still answer.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servingkit import invocation_headers

# Printable ASCII; HTTP cannot carry leading/trailing blanks in a header value.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
    str.strip
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "text/csv",
            "text/csv; charset=utf-8",
            "application/json",
            "application/jsonlines",
            "application/x-ndjson",
            "text/plain",
            "application/octet-stream",
        ]
    ),
    HEADER_TEXT,
)
ACCEPTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "*/*",
            "text/csv",
            "application/json",
            "application/jsonlines",
            "text/csv; predict_proba=true",
            "application/json;predict_proba=1",
            "application/*;q=0.5, text/*",
            "image/png",
            "text/csv;q=abc",
        ]
    ),
    HEADER_TEXT,
)
FIELDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        ["", " ", "NA", "null", "abc", '"1"', "1e999", "-", "1_0", "0x1F", "é", "\x00"]
    ),
)
CSV_LINES = st.lists(st.lists(FIELDS, min_size=0, max_size=7).map(",".join), max_size=12)
CSV_BODIES = st.tuples(CSV_LINES, st.sampled_from(["\n", "\r\n", "\r"])).map(
    lambda parts: parts[1].join(parts[0]).encode("utf-8", "surrogatepass")
)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.text(max_size=5),
    ),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=30,
)
JSON_BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    JSON_VALUES.map(lambda v: json.dumps({"instances": v}).encode()),
    st.lists(JSON_VALUES.map(json.dumps), max_size=6).map(lambda ls: "\n".join(ls).encode()),
)
BODIES = st.one_of(st.binary(max_size=3000), CSV_BODIES, JSON_BODIES)


def test_invocations_never_answer_5xx(binary_server):
    before = binary_server.worker_pids()

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=BODIES,
        content_type=CONTENT_TYPES,
        accept=ACCEPTS,
        attributes=st.one_of(st.none(), HEADER_TEXT, st.just("predict_proba=true")),
    )
    def one_request(body, content_type, accept, attributes):
        headers = invocation_headers(content_type, accept, attributes)
        response = binary_server.client.post("/invocations", content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text)
        if response.status_code >= 400:
            assert response.text.count("\n") == 1, response.text

    one_request()
    # Still healthy: answers /ping, same workers (none died and was replaced).
    assert binary_server.client.get("/ping").status_code == 200
    assert binary_server.worker_pids() == before
    assert "Traceback" not in binary_server.log()
