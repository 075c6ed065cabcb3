"""Job parameters: SageMaker's validation rules, resolution order, filter expressions."""

from __future__ import annotations

import pytest

from model.batch.jsonpath import FilterError, parse_filter
from model.batch.params import ParameterError, TransformJobParameters, resolve

ROW = ["id", "a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$", ROW),
        ("$[*]", ROW),
        (None, ROW),
        ("$[0]", ["id"]),
        ("$[-1]", ["d"]),
        ("$[0,2]", ["id", "b"]),
        ("$[1:]", ["a", "b", "c", "d"]),
        ("$[:2]", ["id", "a", "b"]),  # end inclusive, as the AWS guide defines it
        ("$[1:3]", ["a", "b", "c"]),
        ("$[-2:]", ["c", "d"]),
        ("$[0,3:]", ["id", "c", "d"]),  # the API reference's `$[0,5:]` shape
        ("$[ 0 , -1 ]", ["id", "d"]),
    ],
)
def test_index_filters_select_columns(expression, expected):
    assert parse_filter(expression, parameter="InputFilter").apply(list(ROW)) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("$.features", "name-based paths apply to JSON input"),
        ("$['id']", "name-based paths apply to JSON input"),
        ("$[0:2,4:]", "only a single range"),
        ("$[a]", "not a supported JSONPath"),
        ("[1:]", "not a supported JSONPath"),
        ("$[1:" + "1" * 70 + "]", "at most 63"),
    ],
)
def test_unsupported_filters_are_rejected_clearly(expression, message):
    with pytest.raises(FilterError, match=message) as raised:
        parse_filter(expression, parameter="OutputFilter")
    assert "OutputFilter" in str(raised.value)


def test_index_outside_the_row_is_an_error():
    with pytest.raises(FilterError, match="selects column 7, but the row has 5 columns"):
        parse_filter("$[0,7]", parameter="OutputFilter").apply(list(ROW))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"MaxPayloadInMB": 101}, "between 1 and 100"),
        ({"MaxPayloadInMB": 0}, "chunked"),
        ({"MaxConcurrentTransforms": 17}, r"17 x 6 = 102"),
        ({"MaxConcurrentTransforms": 5, "MaxPayloadInMB": 25}, r"5 x 25 = 125"),
        ({"InvocationsMaxRetries": 4}, "between 0 and 3"),
        ({"InvocationsTimeoutInSeconds": 0}, "between 1 and 3600"),
        ({"BatchStrategy": "Sometimes"}, "MultiRecord | SingleRecord"),
        ({"SplitType": "RecordIO"}, "binary record formats"),
        ({"JoinSource": "Output"}, "Input | None"),
        ({"JoinSource": "Input", "ContentType": "application/json"}, "text/csv input"),
        ({"JoinSource": "Input", "Accept": "application/json"}, "text/csv output"),
        ({"OutputFilter": "$[0]", "AssembleWith": "None"}, "AssembleWith Line"),
        ({"SplitType": "None", "BatchStrategy": "MultiRecord"}, "needs a SplitType"),
    ],
)
def test_sagemaker_would_reject_these(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        TransformJobParameters(**kwargs)


def test_limits_at_the_edge_are_accepted_and_spellings_normalised():
    job = TransformJobParameters(
        MaxConcurrentTransforms=4, MaxPayloadInMB=25, BatchStrategy="MULTI_RECORD"
    )
    assert job.BatchStrategy == "MultiRecord"
    assert TransformJobParameters(MaxConcurrentTransforms=0).MaxConcurrentTransforms is None
    assert TransformJobParameters(SplitType="line", JoinSource="input").JoinSource == "Input"


def test_job_values_win_then_container_then_defaults():
    offered = {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 3}
    resolved = resolve(TransformJobParameters(MaxPayloadInMB=5), offered)
    assert (resolved.MaxPayloadInMB, resolved.MaxConcurrentTransforms) == (5, 8)
    assert resolved.BatchStrategy == "SingleRecord"
    assert resolved.sources == {
        "BatchStrategy": "container",
        "MaxPayloadInMB": "job",
        "MaxConcurrentTransforms": "container",
    }
    defaults = resolve(TransformJobParameters(), None)
    assert (defaults.BatchStrategy, defaults.MaxPayloadInMB, defaults.MaxConcurrentTransforms) == (
        "MultiRecord",
        6,
        1,
    )
    assert defaults.max_payload_bytes == 6 * 1_048_576


def test_unusable_container_answers_fall_back_to_defaults():
    resolved = resolve(
        TransformJobParameters(),
        {"MaxConcurrentTransforms": "many", "BatchStrategy": "ALL", "MaxPayloadInMB": 500},
    )
    assert (resolved.BatchStrategy, resolved.MaxPayloadInMB, resolved.MaxConcurrentTransforms) == (
        "MultiRecord",
        6,
        1,
    )


def test_server_environment_holds_only_what_the_job_set():
    assert TransformJobParameters().server_environment() == {"SAGEMAKER_BATCH": "true"}
    env = TransformJobParameters(
        MaxPayloadInMB=2,
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=3,
        Environment={"SERVING_PREDICT_PROBA": "true"},
    ).server_environment()
    assert env == {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3",
        "SERVING_PREDICT_PROBA": "true",
    }
