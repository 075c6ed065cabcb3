"""Fetch a job's ``.out`` files and score them with the same code as ``--local``.

Batch Transform writes ``<S3OutputPath>/<input path relative to S3Uri>.out`` for each
input file it finished and nothing for a file that failed. Before downloading
anything, every expected object is looked up, so a missing one is named (with the
S3 key it should have had) instead of surfacing later as a scoring error. Downloads
go through boto3's managed transfer, which writes to a temporary name and renames,
so an interrupted download leaves no partial ``.out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.cloud.aws import AwsContext
from model.errors import UserError
from model.report import Score, score_outputs


class ResultsError(UserError):
    """Outputs are missing or cannot be downloaded."""


@dataclass(frozen=True)
class ExpectedOutput:
    """One input file and the S3 object its results should be in."""

    name: str  # the input's name relative to the transform input (part-0000.csv)
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise ResultsError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def expected_outputs(output_uri: str, names: list[str]) -> list[ExpectedOutput]:
    """Where the ``.out`` of each input ``name`` lands under ``output_uri``."""
    bucket, prefix = split_uri(output_uri)
    base = prefix.rstrip("/")
    return [
        ExpectedOutput(name, bucket, f"{base}/{name}.out" if base else f"{name}.out")
        for name in names
    ]


def _existing_keys(context: AwsContext, bucket: str, prefixes: set[str]) -> set[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    keys: set[str] = set()
    paginator = context.client("s3").get_paginator("list_objects_v2")
    for prefix in sorted(prefixes):
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys.update(item["Key"] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as error:
            raise ResultsError(f"cannot list s3://{bucket}/{prefix} ({error})") from None
    return keys


def missing_outputs(context: AwsContext, expected: list[ExpectedOutput]) -> list[ExpectedOutput]:
    """The expected outputs that do not exist in S3."""
    by_bucket: dict[str, set[str]] = {}
    for item in expected:
        by_bucket.setdefault(item.bucket, set()).add(item.key.rsplit("/", 1)[0] + "/")
    existing = {
        (bucket, key)
        for bucket, prefixes in by_bucket.items()
        for key in _existing_keys(context, bucket, prefixes)
    }
    return [item for item in expected if (item.bucket, item.key) not in existing]


def describe_missing(missing: list[ExpectedOutput], jobs: str) -> str:
    """``no output for part-0002.csv (expected s3://...)`` for every missing file."""
    named = "; ".join(f"{item.name} (expected {item.uri})" for item in missing[:5])
    more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
    return f"{jobs} produced no output for {named}{more}"


def download_outputs(
    context: AwsContext, expected: list[ExpectedOutput], output_dir: Path
) -> list[Path]:
    """Download every expected ``.out`` into ``output_dir/<name>.out``."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = context.client("s3")
    paths: list[Path] = []
    for item in expected:
        target = output_dir / f"{item.name}.out"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(item.bucket, item.key, str(target))
        except (ClientError, BotoCoreError) as error:
            raise ResultsError(f"downloading {item.uri} failed ({error})") from None
        paths.append(target)
    return paths


def fetch_and_score(
    context: AwsContext,
    expected: list[ExpectedOutput],
    output_dir: Path,
    manifest: Path,
    *,
    jobs: str,
) -> Score | None:
    """Check all outputs exist, download them, score against the held-out labels.

    None when the input has no labels (a user's ``--model`` run without ``--target``).
    """
    from model.data import has_labels

    missing = missing_outputs(context, expected)
    if missing:
        raise ResultsError(describe_missing(missing, jobs))
    download_outputs(context, expected, output_dir)
    return score_outputs(output_dir, manifest) if has_labels(manifest) else None
