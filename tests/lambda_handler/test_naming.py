"""Job names: always valid for SageMaker, stable for one object, distinct across objects."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from lambda_handler import naming

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")

# Any Unicode (including surrogates and control characters), long and short.
keys = st.text(min_size=1, max_size=1200)
buckets = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)
tokens = st.one_of(
    st.just(""),
    st.builds(
        naming.object_token, st.text(max_size=40), st.text(max_size=40), st.text(max_size=20)
    ),
    st.builds(naming.direct_token, rerun=st.text(max_size=10)),
)
prefixes = st.builds(naming.stack_prefix, st.text(max_size=80), st.text(max_size=80))


@given(prefix=prefixes, bucket=buckets, key=keys, token=tokens)
@example(prefix="sbt-dev-1a2b--", bucket="b" * 63, key="é" * 1024, token="v:x")
@example(prefix="p" * 30, bucket="bkt", key="/" * 50, token="")
@example(prefix="x", bucket="bkt", key="-.-", token="")
@settings(max_examples=400)
def test_names_are_always_valid(prefix: str, bucket: str, key: str, token: str) -> None:
    name = naming.job_name(prefix, bucket, key, token)
    assert len(name) <= 63
    assert SAGEMAKER_NAME.fullmatch(name), name
    assert naming.is_valid_job_name(name)
    assert name.startswith(prefix)
    assert name == name.lower()  # SageMaker ARNs are lower case; prefix filters must match


@given(prefix=prefixes, bucket=buckets, key=keys, token=tokens)
def test_names_are_stable(prefix: str, bucket: str, key: str, token: str) -> None:
    assert naming.job_name(prefix, bucket, key, token) == naming.job_name(
        prefix, str(bucket), "".join(key), str(token)
    )


def test_names_are_stable_across_processes() -> None:
    """No per-process salt (str hash randomisation must not leak into names)."""
    code = (
        "from lambda_handler import naming;"
        "print(naming.job_name(naming.stack_prefix('proj', 'dev'), 'b', 'in/x y.csv', 'v:1'))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {
        naming.job_name(naming.stack_prefix("proj", "dev"), "b", "in/x y.csv", "v:1") + "\n"
    }


objects = st.tuples(buckets, keys, tokens)


@given(prefix=prefixes, first=objects, second=objects)
@example(prefix="p--", first=("bkt", "in/a.csv", "v:1"), second=("bkt", "in/a.csv", "v:2"))
@example(prefix="p--", first=("bkt", "in/a b.csv", ""), second=("bkt", "in/a+b.csv", ""))
@example(prefix="p--", first=("bkt", "in/A.csv", ""), second=("bkt", "in/a.csv", ""))
@example(prefix="p--", first=("bkt", "x" * 200 + "1", ""), second=("bkt", "x" * 200 + "2", ""))
@example(prefix="p--", first=("b-1", "k", ""), second=("b", "1k", ""))
@settings(max_examples=400)
def test_distinct_objects_get_distinct_names(
    prefix: str, first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    assume(first != second)
    assert naming.job_name(prefix, *first) != naming.job_name(prefix, *second)


@given(
    first=st.tuples(st.text(max_size=40), st.text(max_size=40)),
    second=st.tuples(st.text(max_size=40), st.text(max_size=40)),
)
@example(first=("demo", "dev"), second=("demo", "dev2"))
@example(first=("demo", "dev"), second=("demo", "dev-2"))
@example(first=("a", "b-c"), second=("a-b", "c"))
def test_one_stack_prefix_never_matches_another_stacks_names(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """The EventBridge rule and the IAM policy match 'this stack's jobs' by prefix."""
    p1, p2 = naming.stack_prefix(*first), naming.stack_prefix(*second)
    assert len(p1) <= naming.MAX_PREFIX_LENGTH and p1.endswith("--")
    if p1 != p2:
        name2 = naming.job_name(p2, "bucket", "in/some-file.csv", "v:1")
        assert not name2.startswith(p1)


def test_stack_prefix_shape() -> None:
    assert naming.stack_prefix("sagemaker-batch-transform", "dev").startswith("sbt-dev-")
    assert naming.stack_prefix("demo", "prod").startswith("demo-prod-")
    assert naming.stack_prefix("日本", "本番").endswith("--")


def test_readable_part_comes_from_the_file_name() -> None:
    name = naming.job_name("p--", "bkt", "transform/input/2026/Daily Sales.csv", "v:1")
    assert re.fullmatch(r"p--daily-sales-[0-9a-f]{16}", name)


@pytest.mark.parametrize(
    ("args", "token"),
    [
        (("v1", '"etag"', "seq"), "v:v1"),
        (("null", '"etag"', "seq"), "e:etag"),  # S3's version of unversioned objects
        ((None, "etag", "seq"), "e:etag"),  # events carry it unquoted, PutObject quoted
        ((None, None, "seq"), "s:seq"),
        ((None, None, None), ""),
    ],
)
def test_object_token_prefers_version_then_etag_then_sequencer(
    args: tuple[str | None, ...], token: str
) -> None:
    assert naming.object_token(*args) == token


@pytest.mark.parametrize("prefix", ["", "-abc", "Abc", "a_b", "a" * 31, "ab--cd--", "a b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    if prefix == "ab--cd--":  # allowed: inner hyphen runs are fine for SageMaker
        assert naming.job_name(prefix, "b", "k")
        return
    with pytest.raises(ValueError, match="job name prefix"):
        naming.job_name(prefix, "b", "k")


def test_naming_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import lambda_handler.naming;"
        "print(any(m.split('.')[0] in ('boto3', 'botocore') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
