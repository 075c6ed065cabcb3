"""Deterministic SageMaker transform job names for S3 objects.

Why deterministic: S3 and EventBridge deliver events at least once, so the same
upload can reach the Lambda twice (or be retried after an error). Deriving the
job name from the object itself makes the second CreateTransformJob collide with
the first job instead of starting another one, and it lets any script that knows
the object find the job the Lambda started, without a lookup table:

    >>> from lambda_handler.naming import job_name, object_token, stack_prefix
    >>> prefix = stack_prefix("sagemaker-batch-transform", "dev")
    >>> resp = s3.put_object(Bucket=bucket, Key=key, Body=data)
    >>> name = job_name(prefix, bucket, key, object_token(resp.get("VersionId"), resp["ETag"]))

Every name matches SageMaker's rule ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` (at most
63 characters) for any input, including long and non-ASCII keys. Names are all
lower case because SageMaker lower-cases names inside ARNs, so IAM resource
patterns and EventBridge prefix filters built from ``stack_prefix`` match them.

Pure standard library on purpose: scripts import it without boto3.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

__all__ = [
    "JOB_NAME_PATTERN",
    "MAX_JOB_NAME_LENGTH",
    "MAX_PREFIX_LENGTH",
    "direct_token",
    "is_valid_job_name",
    "job_name",
    "object_token",
    "stack_prefix",
]

#: SageMaker's pattern for job and model names (CreateTransformJob API reference).
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
MAX_JOB_NAME_LENGTH = 63
#: Longest accepted prefix: leaves room for a readable part and the 16-character hash.
MAX_PREFIX_LENGTH = 30

_HASH_CHARS = 16  # 64 bits of SHA-256: collisions are not a practical concern
_PREFIX_PATTERN = re.compile(r"[a-z0-9](-*[a-z0-9])*-*")
_PROJECT_CHARS = 10
_STACK_CHARS = 8


def is_valid_job_name(name: str) -> bool:
    """True when SageMaker accepts ``name`` as a transform job (or model) name."""
    return len(name) <= MAX_JOB_NAME_LENGTH and JOB_NAME_PATTERN.fullmatch(name) is not None


def _slug(text: str) -> str:
    """Lower-case ASCII letters and digits joined by single hyphens.

    Accents are folded (``données`` -> ``donnees``); characters with no ASCII form
    (CJK, emoji, ...) become separators and vanish. May return "".
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def _digest(*parts: str, chars: int = _HASH_CHARS) -> str:
    # JSON keeps the parts unambiguous (no separator can be forged by a key) and
    # escapes lone surrogates, so every Python str hashes.
    encoded = json.dumps(list(parts), ensure_ascii=True).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()[:chars]


def stack_prefix(project: str, stack: str) -> str:
    """The job-name prefix shared by every job the trigger of one stack starts.

    Shape: ``<project>-<stack>-<hash4>--``, e.g. ``sbt-dev-1a2b--`` for project
    ``sagemaker-batch-transform`` (a project slug longer than 10 characters is
    shortened to its initials) and stack ``dev`` (cut to 8 characters). The 4 hex
    characters of hash keep two stacks whose shortened names agree apart.

    The trailing ``--`` is a terminator: the readable part never contains
    ``--``, so no stack's prefix is a prefix of another stack's names, which is
    what lets the EventBridge rule and the IAM policy match "this stack's jobs
    only" with a plain prefix.
    """
    project_slug = _slug(project)
    if len(project_slug) > _PROJECT_CHARS:
        project_slug = "".join(word[0] for word in project_slug.split("-"))[:_PROJECT_CHARS]
    stack_slug = _slug(stack)[:_STACK_CHARS].strip("-")
    parts = [p for p in (project_slug, stack_slug, _digest(project, stack, chars=4)) if p]
    return "-".join(parts) + "--"


def object_token(
    version_id: str | None = None, etag: str | None = None, sequencer: str | None = None
) -> str:
    """What tells two uploads of the same key apart, in order of preference.

    - the S3 version id (versioned buckets; the stack's bucket is versioned), which an
      uploader gets back from PutObject as ``VersionId``;
    - otherwise the ETag (``"..."`` quotes, as PutObject returns it, are ignored), so
      re-uploading identical bytes to an unversioned bucket is not transformed again;
    - otherwise the event's sequencer; otherwise "".

    S3 reports ``"null"`` as the version of objects written while versioning was
    off or suspended: that counts as no version.
    """
    if version_id and version_id != "null":
        return f"v:{version_id}"
    bare_etag = (etag or "").strip('"')
    if bare_etag:
        return f"e:{bare_etag}"
    if sequencer:
        return f"s:{sequencer}"
    return ""


def direct_token(
    *,
    version: str | None = None,
    model: str | None = None,
    output: str | None = None,
    rerun: str | None = None,
) -> str:
    """Token for a direct invocation: every field the caller set takes part.

    The same direct request twice names the same job (safe to retry); changing the
    model, the output or the ``rerun`` value names a new one.
    """
    return "d:" + json.dumps([version or "", model or "", output or "", rerun or ""])


def _readable(key: str) -> str:
    """A human hint taken from the key: its last path segment without extension."""
    segment = key.rstrip("/").rsplit("/", 1)[-1]
    stem = segment.rsplit(".", 1)[0] if "." in segment[1:] else segment
    return _slug(stem)


def job_name(prefix: str, bucket: str, key: str, token: str = "") -> str:
    """The transform job name for one object: ``<prefix><readable>-<hash16>``.

    ``prefix`` comes from :func:`stack_prefix` (or any string of lower-case letters,
    digits and hyphens starting with a letter or digit, at most 30 characters).
    ``token`` identifies the object's version (:func:`object_token`) or the direct
    request (:func:`direct_token`). The hash covers bucket, key and token, so names
    are stable for the same object and distinct for distinct objects; the readable
    part (from the key's file name, shortened to fit 63 characters) is only a hint.
    """
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"job name prefix {prefix!r} must be 1-{MAX_PREFIX_LENGTH} lower-case letters, "
            "digits and hyphens, starting with a letter or digit"
        )
    digest = _digest(bucket, key, token)
    joiner = "" if prefix.endswith("-") else "-"
    room = MAX_JOB_NAME_LENGTH - len(prefix) - len(joiner) - 1 - len(digest)
    readable = _readable(key)[:room].strip("-")
    middle = f"{readable}-" if readable else ""
    return f"{prefix}{joiner}{middle}{digest}"
