"""Fast in-process tests of the serving modules: settings, negotiation, codecs, loading."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servingkit import FEATURES, csv_rows, write_model

from serving import codecs, csv_codec, runtime
from serving.body import Body
from serving.codecs import decode, decode_csv_whole, encode
from serving.errors import RequestError, StartupError
from serving.inference import transform
from serving.model_loading import load_model
from serving.negotiation import (
    Format,
    custom_attributes_proba,
    request_format,
    response_format,
)
from serving.settings import Settings, available_cpus

# ------------------------------------------------------------------ settings


def test_settings_defaults():
    s = Settings.from_env({})
    assert str(s.model_dir) == "/opt/ml/model"
    assert (s.host, s.port) == ("0.0.0.0", 8080)
    assert s.workers == available_cpus() >= 1
    assert s.max_payload_mb == 6
    assert s.max_body_bytes >= 100 * 1024 * 1024  # SageMaker's largest payload fits
    assert s.predict_proba is False


def test_settings_from_env():
    s = Settings.from_env(
        {
            "MODEL_DIR": "/m",
            "SERVING_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SERVING_WORKERS": "3",
            "SERVING_MAX_PAYLOAD_MB": "20",
            "SERVING_MAX_BODY_MB": "1.5",
            "SERVING_PREDICT_PROBA": "TRUE",
        }
    )
    assert (str(s.model_dir), s.host, s.port, s.workers) == ("/m", "127.0.0.1", 9000, 3)
    assert s.max_payload_mb == 20
    assert s.max_body_bytes == int(1.5 * 1024 * 1024)
    assert s.predict_proba is True
    assert s.advertised_max_payload_mb() == 20


def test_advertised_payload_respects_sagemaker_product_limit():
    # MaxConcurrentTransforms x MaxPayloadInMB must stay <= 100.
    s = Settings.from_env({"SERVING_WORKERS": "32"})
    assert s.advertised_max_payload_mb() == 3
    assert Settings.from_env({"SERVING_WORKERS": "200"}).advertised_max_payload_mb() == 1


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SAGEMAKER_BIND_TO_PORT", "http", "not an integer"),
        ("SAGEMAKER_BIND_TO_PORT", "70000", "out of range"),
        ("SERVING_WORKERS", "0", "out of range"),
        ("SERVING_MAX_PAYLOAD_MB", "101", "out of range"),
        ("SERVING_MAX_BODY_MB", "-1", "positive"),
        ("SERVING_MAX_BODY_MB", "lots", "not a number"),
        ("SERVING_PREDICT_PROBA", "maybe", "not a boolean"),
    ],
)
def test_bad_settings_name_the_variable(name, value, fragment):
    with pytest.raises(StartupError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) and fragment in str(info.value)


# --------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        ("text/csv", Format.CSV),
        ("text/csv; charset=utf-8", Format.CSV),
        ("Text/CSV;Charset=UTF-8", Format.CSV),
        ("application/json", Format.JSON),
        ("application/json; charset=utf-8", Format.JSON),
        ("application/jsonlines", Format.JSONLINES),
        ("application/x-jsonlines", Format.JSONLINES),
    ],
)
def test_request_formats(header, fmt):
    assert request_format(header) is fmt


@pytest.mark.parametrize(
    "header", [None, "", "text/plain", "application/xml", "text/csv; charset=latin-1"]
)
def test_unsupported_content_type_is_415(header):
    with pytest.raises(RequestError) as info:
        request_format(header)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("accept", "request_fmt", "expected"),
    [
        (None, Format.CSV, Format.CSV),
        ("", Format.JSON, Format.JSON),
        ("*/*", Format.JSONLINES, Format.JSONLINES),
        ("application/json", Format.CSV, Format.JSON),
        ("text/csv", Format.JSON, Format.CSV),
        ("application/jsonlines", Format.CSV, Format.JSONLINES),
        ("text/*", Format.JSON, Format.CSV),
        ("application/*", Format.CSV, Format.JSON),
        ("application/*", Format.JSONLINES, Format.JSONLINES),
        ("text/html, application/json;q=0.9, */*;q=0.1", Format.CSV, Format.JSON),
        ("text/csv;q=0.5, application/json", Format.CSV, Format.JSON),
        ("*/*, application/jsonlines", Format.CSV, Format.JSONLINES),
        ("application/json;q=0, text/csv", Format.JSON, Format.CSV),
    ],
)
def test_accept_negotiation(accept, request_fmt, expected):
    assert response_format(accept, request_fmt) == (expected, None)


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml, image/png", "text/csv;q=0", "csv"]
)
def test_unsupported_accept_is_406(accept):
    with pytest.raises(RequestError) as info:
        response_format(accept, Format.CSV)
    assert info.value.status == 406


def test_probability_parameters():
    assert response_format("text/csv; predict_proba=true", Format.CSV) == (Format.CSV, True)
    assert response_format("application/json;predict_proba=0", Format.CSV) == (Format.JSON, False)
    assert custom_attributes_proba("trace=1; predict_proba=yes") is True
    assert custom_attributes_proba("predict_proba=false") is False
    assert custom_attributes_proba("something else") is None
    with pytest.raises(RequestError) as info:
        response_format("text/csv; predict_proba=perhaps", Format.CSV)
    assert info.value.status == 400


# -------------------------------------------------------------------- codecs


def test_csv_decoding_accepts_common_shapes():
    expected = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    for body in [
        b"1,2,3\n4,5,6",
        b"1,2,3\n4,5,6\n",
        b"1,2,3\r\n4,5,6\r\n",
        b"1,2,3\n4,5,6\n\n\n",
        b"\xef\xbb\xbf1,2,3\n4,5,6\n",
        b" 1 , 2,3\n4,5.0,6e0\n",
    ]:
        np.testing.assert_array_equal(decode(Format.CSV, body, 3), expected, err_msg=repr(body))


def test_csv_missing_values_become_nan():
    got = decode(Format.CSV, b"1,,3\nnan,NA,null\n", 3)
    assert np.isnan(got).sum() == 4


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"", ["empty body"]),
        (b"\n \n", ["empty body"]),
        (b"1,2,3\n4,5\n", ["line 2 has 2 values, expected 3"]),
        (b"1,2,3\n4,5,6,7\n", ["line 2 has 4 values, expected 3"]),
        (b"1,2\n3,4\n", ["line 1 has 2 values, expected 3"]),
        (b"1,2,3\n\n4,5,6\n", ["line 2 is empty"]),
        (b"a,b,c\n1,2,3\n", ["line 1, column 1", "'a' is not a number", "header"]),
        (b"1,2,3\n4,x,6\n", ["line 2, column 2", "'x' is not a number"]),
        (b'1,"2",3\n', ["line 1, column 2"]),
        (b"1,2,3\n1_000,2,3\n", ["line 2, column 1"]),
        (b"1,2,\xff\n", ["not UTF-8", "offset 4"]),
        (b"1;2;3\n", ["line 1 has 1 values, expected 3"]),
    ],
)
def test_csv_errors_name_the_line(body, fragments):
    with pytest.raises(RequestError) as info:
        decode(Format.CSV, body, 3)
    assert info.value.status == 400
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    assert "\n" not in info.value.message


def test_csv_single_feature_blank_line_is_caught():
    with pytest.raises(RequestError, match="line 2 is empty"):
        decode(Format.CSV, b"1\n\n2\n", 1)
    assert np.isnan(decode(Format.CSV, b"1\nnan\n2\n", 1)).sum() == 1


def test_json_decoding():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(
        decode(Format.JSON, b'{"instances": [[1, 2], [3, 4.0]]}', 2), expected
    )
    np.testing.assert_array_equal(decode(Format.JSON, b"[[1, 2], [3, 4]]", 2), expected)
    np.testing.assert_array_equal(decode(Format.JSONLINES, b"[1, 2]\n[3, 4]\n\n", 2), expected)
    assert np.isnan(decode(Format.JSON, b"[[1, null]]", 2)).sum() == 1


@pytest.mark.parametrize(
    ("fmt", "body", "fragment"),
    [
        (Format.JSON, b"{", "malformed JSON at line 1"),
        (Format.JSON, b'{"rows": [[1, 2]]}', '"instances"'),
        (Format.JSON, b'{"instances": 5}', "list of rows"),
        (Format.JSON, b"[]", "no rows"),
        (Format.JSON, b"[1, 2]", "row 1 is not a list"),
        (Format.JSON, b"[[1, 2], [3]]", "row 2 has 1 values, expected 2"),
        (Format.JSON, b'[[1, "a"]]', 'row 1, column 2: "a" is not a number'),
        (Format.JSON, b"[[1, true]]", "row 1, column 2: true is not a number"),
        (Format.JSON, b"[[1, 1e999999]]", None),  # inf: decoded, rejected at predict
        (Format.JSON, b"[[1, 123456789012345678901234567890" + b"0" * 400 + b"]]", "out of range"),
        (Format.JSON, b"[" * 100_000, "nested too deeply"),
        (Format.JSONLINES, b"[1, 2]\n\n[3, 4]", "line 2 is empty"),
        (Format.JSONLINES, b"[1, 2]\n[3, 4", "line 2: malformed JSON"),
        (Format.JSONLINES, b'[1, 2]\n{"a": 1}', "line 2 is not a list"),
    ],
)
def test_json_errors(fmt, body, fragment):
    if fragment is None:
        assert np.isinf(decode(fmt, body, 2)).any()
        return
    with pytest.raises(RequestError) as info:
        decode(fmt, body, 2)
    assert info.value.status == 400
    assert fragment in info.value.message, info.value.message


def test_encoders():
    labels = np.array([1, 0])
    probs = np.array([[0.75], [0.25]])
    assert encode(Format.CSV, labels, None) == b"1\n0"
    assert encode(Format.CSV, labels, probs) == b"1,0.75\n0,0.25"
    assert json.loads(encode(Format.JSON, labels, None)) == {"predictions": [1, 0]}
    assert json.loads(encode(Format.JSON, labels, probs)) == {"predictions": [[1, 0.75], [0, 0.25]]}
    assert encode(Format.JSONLINES, labels, probs) == b"[1,0.75]\n[0,0.25]"
    strings = np.array(["a", 'b,"c"'], dtype=object)
    assert encode(Format.CSV, strings, None) == b'a\n"b,""c"""'
    assert encode(Format.CSV, np.array([0.5, 2.0]), None) == b"0.5\n2.0"


# ----------------------------------------------------------------- inference


def test_transform_matches_predict(binary_model):
    x = np.random.default_rng(5).normal(size=(50, FEATURES))
    body, ctype = transform(binary_model, csv_rows(x), "text/csv", None)
    assert ctype == "text/csv"
    expected = binary_model.estimator.predict(x)
    assert body.decode().split("\n") == [str(v) for v in expected]
    body, _ = transform(binary_model, csv_rows(x), "text/csv", "text/csv; predict_proba=true")
    probs = [float(line.split(",")[1]) for line in body.decode().split("\n")]
    np.testing.assert_allclose(probs, binary_model.estimator.predict_proba(x)[:, 1])


def test_multiclass_probabilities_and_quoted_labels(multiclass_model):
    x = np.array([[2.0, 0, 0, 0], [-2.0, 0, 0, 0], [0.0, 0, 0, 0]])
    body, _ = transform(multiclass_model, csv_rows(x), "text/csv", None, predict_proba=True)
    lines = body.decode().split("\n")
    assert [line.split(",")[0] for line in lines[:2]] == ["high", "low"]
    assert lines[2].startswith('"mid, ""ish""",')
    doc = json.loads(transform(multiclass_model, csv_rows(x), "text/csv", "application/json")[0])
    assert doc["predictions"] == ["high", "low", 'mid, "ish"']
    rows = json.loads(
        transform(multiclass_model, csv_rows(x), "text/csv", "application/json; predict_proba=1")[0]
    )["predictions"]
    assert all(len(row) == 1 + 3 for row in rows)
    assert all(abs(sum(row[1:]) - 1) < 1e-9 for row in rows)


def test_probabilities_refused_for_regressor(regressor_model):
    body, _ = transform(regressor_model, b"1,2,3,4\n", "text/csv", None)
    assert float(body) == pytest.approx(1 + 4 + 9 + 16)
    with pytest.raises(RequestError) as info:
        transform(regressor_model, b"1,2,3,4\n", "text/csv", "text/csv;predict_proba=true")
    assert info.value.status == 400 and "predict_proba" in info.value.message


def test_nan_allowed_only_where_the_model_takes_it(binary_model, nan_model):
    body = b"1,2,3,4\n1,,3,4\n"
    assert len(transform(nan_model, body, "text/csv", None)[0].split(b"\n")) == 2
    with pytest.raises(RequestError) as info:
        transform(binary_model, body, "text/csv", None)
    assert info.value.status == 400
    assert "line 2, column 2 is missing (NaN)" in info.value.message
    with pytest.raises(RequestError) as info:
        transform(binary_model, b"[[1, 2, 3, 1e999]]", "application/json", None)
    assert "row 1, column 4 is infinite" in info.value.message


# -------------------------------------------------------------- model loading


def test_load_model_reads_metadata(binary_dir, multiclass_dir):
    model = load_model(binary_dir)
    assert model.feature_count == FEATURES
    assert model.classes == (0, 1)
    assert model.describe() == "Pipeline(StandardScaler -> LogisticRegression)"
    other = load_model(multiclass_dir)  # no metadata.json: count from the estimator
    assert other.feature_count == FEATURES
    assert other.feature_names_in == ("f0", "f1", "f2", "f3")


def test_load_model_errors_name_the_path(tmp_path, binary_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(StartupError, match="does not exist"):
        load_model(missing)
    with pytest.raises(StartupError, match=r"model\.joblib not found"):
        load_model(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(StartupError) as info:
        load_model(tmp_path)
    assert str(tmp_path / "model.joblib") in str(info.value)
    write_model(tmp_path, {"just": "a dict"}, None)
    with pytest.raises(StartupError, match="not a fitted estimator"):
        load_model(tmp_path)
    bad_meta = tmp_path / "meta"
    bad_meta.mkdir()
    (bad_meta / "model.joblib").write_bytes((binary_dir / "model.joblib").read_bytes())
    (bad_meta / "metadata.json").write_text("{nope")
    with pytest.raises(StartupError, match=r"metadata\.json is not valid JSON"):
        load_model(bad_meta)
    (bad_meta / "metadata.json").write_text(json.dumps({"feature_count": 7}))
    with pytest.raises(StartupError, match="feature_count=7 but"):
        load_model(bad_meta)
    (bad_meta / "metadata.json").write_text(json.dumps({"feature_count": "4"}))
    with pytest.raises(StartupError, match="positive integer"):
        load_model(bad_meta)


# ---------------------------------------------------------------------- body


def test_body_trailing_blank_lines_across_chunks():
    assert Body([b"1,2\n"]).without_trailing_blank_lines().joined() == b"1,2\n"
    assert Body([b"1,2\r\n"]).without_trailing_blank_lines().joined() == b"1,2\r\n"
    assert Body([b"1,2\n", b"\n", b"\r\n"]).without_trailing_blank_lines().joined() == b"1,2"
    assert Body([b"1,2", b"\n\n"]).without_trailing_blank_lines().joined() == b"1,2"
    assert Body([b"\n", b"\n"]).without_trailing_blank_lines().chunks == []
    body = Body([b"1,", b"", b"2\n3,4"])
    assert body.count(b",") == 2 and body.size == 7 and not body.is_blank()
    assert Body([b" ", b"\n"]).is_blank() and Body([]).is_blank()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=3, max_size=3),
        min_size=1,
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    newline=st.sampled_from(["\n", "\r\n"]),
    trailing=st.sampled_from(["", "\n", "\n\n", "\r\n\r\n"]),
)
def test_csv_decoding_does_not_depend_on_how_the_body_was_chunked(rows, cuts, newline, trailing):
    whole = (newline.join(",".join(map(repr, row)) for row in rows) + trailing).encode()
    points = sorted({c % (len(whole) + 1) for c in cuts} | {0, len(whole)})
    chunks = [whole[a:b] for a, b in itertools.pairwise(points)]
    expected = np.array(rows, dtype=np.float64)
    np.testing.assert_array_equal(decode(Format.CSV, Body(chunks), 3), expected)
    np.testing.assert_array_equal(decode(Format.CSV, whole, 3), expected)


# ------------------------------------------------------------------- runtime


def test_runtime_tuning(monkeypatch):
    import sys

    for variable in runtime._THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the operator's choice is kept
    runtime.limit_native_threads(workers=max(1, available_cpus()))
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "3"
    if sys.platform.startswith("linux"):
        assert runtime.tune_allocator() is True
    import gc

    try:
        runtime.freeze_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# Field spellings where parsers are known to disagree, next to ordinary numbers.
_EDGE_FIELDS = [
    "", " ", "x", "NA", "N/A", "null", "None", "nan", "NaN", "-nan", "NAN", "inf", "-inf",
    "Infinity", "+inf", "1e400", "-1e400", "1e-400", "4.9e-324", "1_0", ".5", "5.", "+1",
    "1e5", "1E+05", "1e", "e5", "0x10", '"1"', "-0", "- 1", " 1", "1 ", "1.5.2", "#N/A",
    "1.#IND", "\ufeff1", "0.1000000000000000055511151231257827021181583404541015625",
    "9007199254740993", "123456789012345678901234567890", "2.2250738585072011e-308",
    "-0.0", "-0e5", "-1e-400", " -0", "-0 ", "-0\t", "0", "18446744073709551616", "[1", "1]",
    "[]", "{}", "true", "1\r", "\t1", "1e-5", "-4.9e-324", "1E400",
]  # fmt: skip
CSV_FIELDS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(width=32).map(str),
    st.integers(-(10**20), 10**20).map(str),
    st.builds(
        lambda digits, exponent: f"{digits[:1]}.{digits[1:]}e{exponent}",
        st.text("0123456789", min_size=1, max_size=25),
        st.integers(-330, 310),
    ),
    st.sampled_from(_EDGE_FIELDS),
)
CSV_LINES = st.lists(
    st.one_of(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False).map(repr), min_size=3, max_size=3
        ),
        st.lists(CSV_FIELDS, min_size=3, max_size=3),
        st.lists(CSV_FIELDS, min_size=0, max_size=4),
    ).map(",".join),
    min_size=0,
    max_size=25,
)


def _outcome(call):
    try:
        return ("ok", call())
    except RequestError as err:
        return ("error", err.status, err.message)


@settings(max_examples=500, deadline=None)
@given(
    lines=CSV_LINES,
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    trailing=st.sampled_from(["", "\n", "\n\n", "\r\n"]),
    feature_count=st.sampled_from([3, 1, None]),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=5),
)
def test_fast_csv_decoder_agrees_with_pandas_bit_for_bit(
    lines, newline, trailing, feature_count, cuts
):
    """simdjson and polars give pandas' exact matrix (every bit), or its exact error."""
    whole = (newline.join(lines) + trailing).encode()
    points = sorted({c % (len(whole) + 1) for c in cuts} | {0, len(whole)})
    chunks = [whole[a:b] for a, b in itertools.pairwise(points)]
    fast = _outcome(lambda: decode(Format.CSV, Body(chunks), feature_count))
    if Body([whole]).is_blank():
        reference = ("error", 400, "empty body: send one or more rows of numbers")
    else:
        reference = _outcome(lambda: decode_csv_whole(whole, feature_count))
    if reference[0] == "ok":
        assert fast[0] == "ok", fast
        assert fast[1].shape == reference[1].shape
        assert fast[1].dtype == np.float64
        np.testing.assert_array_equal(fast[1].view(np.uint64), reference[1].view(np.uint64))
    else:
        assert fast == reference


def test_fast_csv_decoder_is_polars_and_keeps_pandas_layout(monkeypatch):
    """Clean numeric CSV never reaches pandas, and comes back in the same memory order."""
    rng = np.random.default_rng(5)
    values = rng.normal(size=(500, 7))
    values[3, 2] = np.nan  # an empty field
    text = "\n".join(
        ",".join("" if np.isnan(v) else repr(v) for v in row) for row in values.tolist()
    )
    reference = decode_csv_whole(text.encode(), 7)

    def no_pandas(*args, **kwargs):
        raise AssertionError("pandas was called")

    monkeypatch.setattr(csv_codec.pd, "read_csv", no_pandas)
    fast = codecs.decode_csv(text.encode(), 7)
    np.testing.assert_array_equal(fast.view(np.uint64), reference.view(np.uint64))
    assert fast.flags.f_contiguous == reference.flags.f_contiguous


def test_plain_numbers_are_read_by_simdjson_alone(monkeypatch):
    """Numbers-only CSV reaches neither polars nor pandas, bit-identical, in pandas' layout."""
    rng = np.random.default_rng(6)
    values = rng.normal(size=(400, 9)) * 10.0 ** rng.integers(-300, 300, size=(400, 9))
    values[0, :3] = [0.0, -0.0, 12345.0]
    lines = [",".join(map(repr, row)) for row in values.tolist()]
    lines[1] = lines[1].replace(",", " ,\t", 2)  # JSON whitespace around values
    text = "\r\n".join(lines) + "\r\n"
    reference = decode_csv_whole(text.encode(), 9)

    def refused(*args, **kwargs):
        raise AssertionError("the simdjson path gave up")

    monkeypatch.setattr(csv_codec.pd, "read_csv", refused)
    monkeypatch.setattr(csv_codec.pl, "read_csv", refused)
    fast = codecs.decode_csv(Body([text.encode()[:1000], text.encode()[1000:]]), 9)
    np.testing.assert_array_equal(fast.view(np.uint64), reference.view(np.uint64))
    assert fast.flags.f_contiguous and reference.flags.f_contiguous
    assert fast.flags.writeable


@pytest.mark.parametrize(
    "body",
    [b"1,-0\n2,3\n", b"1,2\r3,4\n", b"[1,2]\n", b"1,2\n\n3,4\n", b"1,2,3\n4\n", b"1,true\n"],
)
def test_simdjson_path_refuses_what_json_reads_differently(body):
    """Integer -0, lone CR, brackets, blank or ragged lines, JSON literals: left to polars."""
    from serving import csv_simd

    assert csv_simd.decode(body.rstrip(b"\n") + b"\n", 2) is None


def test_one_column_is_read_without_row_arrays():
    from serving import csv_simd

    body = b"1.5\n-2e-3\n0\n7\n"
    matrix = csv_simd.decode(body, 1)
    assert matrix.shape == (4, 1)
    np.testing.assert_array_equal(matrix.view(np.uint64), decode_csv_whole(body, 1).view(np.uint64))
    assert csv_simd.decode(b"1\n2,3\n", 1) is None  # a second column
    assert csv_simd.decode(b"1\n-0\n", 1) is None  # integer -0


def test_decoders_are_tried_in_the_order_their_costs_say(monkeypatch):
    """simdjson first for small bodies, one column or 8+; polars first for big narrow ones."""
    calls = []
    real_simd, real_polars = csv_codec.csv_simd.decode, csv_codec._decode_polars
    monkeypatch.setattr(
        csv_codec.csv_simd, "decode", lambda *a: calls.append("simdjson") or real_simd(*a)
    )
    monkeypatch.setattr(
        csv_codec, "_decode_polars", lambda *a: calls.append("polars") or real_polars(*a)
    )
    rng = np.random.default_rng(7)

    def first_decoder(rows: int, width: int) -> list[str]:
        calls.clear()
        codecs.decode_csv(csv_rows(rng.normal(size=(rows, width))), width)
        return calls

    assert first_decoder(10, 3) == ["simdjson"]
    assert first_decoder(20_000, 3) == ["polars"]  # ~1 MiB of 3 columns
    assert first_decoder(20_000, 1) == ["simdjson"]
    assert first_decoder(2_000, 20) == ["simdjson"]


def test_without_polars_decodes_with_pandas(monkeypatch):
    calls = []
    real = csv_codec.pl.read_csv

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(csv_codec.pl, "read_csv", counting)
    body = b"1,\n3,4\n"  # an empty field: not JSON, so past simdjson
    with csv_codec.without_polars():
        matrix = codecs.decode_csv(body, 2)
    assert np.array_equal(matrix, [[1.0, np.nan], [3.0, 4.0]], equal_nan=True)
    assert calls == []
    assert np.array_equal(codecs.decode_csv(body, 2), [[1.0, np.nan], [3.0, 4.0]], equal_nan=True)
    assert calls == [1]


def test_a_child_forked_after_polars_ran_falls_back_instead_of_hanging(tmp_path):
    """polars' thread pool does not survive fork(): the child must not call it."""
    script = tmp_path / "fork_child.py"
    script.write_text(
        "import os, sys\n"
        "from serving.csv_codec import decode_csv, _state\n"
        "body = b'1,\\n3,4\\n' * 1000  # an empty field: past simdjson, to polars\n"
        "decode_csv(body, 2)\n"
        "assert _state['used']\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    m = decode_csv(body, 2)\n"
        "    os._exit(0 if m.shape == (2000, 2) and not _state['polars'] else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(script)], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-500:]


def test_binary_formats_are_negotiated():
    assert request_format("application/x-parquet") is Format.PARQUET
    assert request_format("application/vnd.apache.parquet") is Format.PARQUET
    assert request_format("application/x-npy") is Format.NPY
    for request in (Format.PARQUET, Format.NPY):
        assert response_format(None, request) == (Format.CSV, None)
        assert response_format("*/*", request) == (Format.CSV, None)
        assert response_format("application/*", request) == (Format.JSON, None)
    assert response_format("application/x-parquet; predict_proba=true", Format.CSV) == (
        Format.PARQUET,
        True,
    )
    with pytest.raises(RequestError) as caught:
        response_format("application/x-npy", Format.NPY)
    assert caught.value.status == 406
