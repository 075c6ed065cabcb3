"""Build the CreateTransformJob request for one object and start it idempotently.

Idempotency: the job name is derived from the object (lambda_handler.naming), so a
duplicate delivery asks SageMaker for a job that already exists. SageMaker rejects
a name in use (ValidationException "... a job with this name already exists", or
ResourceInUse); we then describe the existing job and report it as "existing"
instead of failing or starting a second job.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from lambda_handler.config import Settings
from lambda_handler.events import ObjectRef, parse_s3_uri
from lambda_handler.instance_storage import volume_kms_key

__all__ = ["JobError", "JobOutcome", "build_request", "output_path", "start_job"]

_DUPLICATE_HINTS = ("already exist", "already in use", "must be unique")


class JobError(RuntimeError):
    """The job could not be started; the message says why."""


class JobOutcome(NamedTuple):
    """What happened to one object: a new job, or the job a previous delivery started."""

    job_name: str
    created: bool
    status: str  # "InProgress" for a new job, else the existing job's status
    arn: str | None = None


def output_path(ref: ObjectRef, settings: Settings) -> str:
    """Where SageMaker writes the results: under the output prefix, mirroring the input key.

    SageMaker names each result ``<S3OutputPath>/<input path relative to S3Uri>.out``;
    for a single object that is its file name, so ``<in>/sub/a.csv`` gives
    ``<out>/sub/a.csv.out``. For a direct request naming a prefix (``.../batch/``) the
    files under it land under ``<out>/batch/``. An explicit ``output`` wins, but may not
    point under the input prefix (its results would trigger new jobs).
    """
    if ref.output:
        _, out_key = parse_s3_uri(ref.output, "output")
        if (out_key.rstrip("/") + "/").startswith(settings.input_prefix):
            raise JobError(
                f"output {ref.output} is under the input prefix {settings.input_prefix!r}: "
                "its results would start new jobs; choose another output"
            )
        return ref.output.rstrip("/")
    key = ref.key
    relative = key[len(settings.input_prefix) :] if key.startswith(settings.input_prefix) else key
    relative_dir = relative.rstrip("/") if key.endswith("/") else relative.rpartition("/")[0]
    base = settings.output_prefix.rstrip("/")
    path = f"{base}/{relative_dir}" if relative_dir else base
    return f"s3://{ref.bucket}/{path}"


# CreateTransformJob's S3Uri and S3OutputPath: at most 1,024 characters (botocore's
# SageMaker service model, shapes S3Uri / TransformOutput.S3OutputPath). S3 keys may
# be 1,024 bytes long, so a long key can make a URI SageMaker refuses.
MAX_S3_URI = 1024


def _check_uri_length(uri: str, field: str) -> None:
    if len(uri) > MAX_S3_URI:
        raise JobError(
            f"{field} would be {len(uri):,} characters ({uri[:80]}...), more than the "
            f"{MAX_S3_URI:,} CreateTransformJob accepts: give the object a shorter key"
        )


def build_request(ref: ObjectRef, settings: Settings, model: str, job_name: str) -> dict[str, Any]:
    """The CreateTransformJob arguments for ``ref`` (S3Prefix on the object's exact key).

    JobError, before anything is sent, when a URI is longer than the API accepts.
    """
    _check_uri_length(ref.uri, "TransformInput S3Uri")
    output = output_path(ref, settings)
    _check_uri_length(output, "S3OutputPath")
    transform_output: dict[str, Any] = {
        "S3OutputPath": output,
        "Accept": settings.accept,
        "AssembleWith": settings.assemble_with,
    }
    if settings.output_kms_key:
        transform_output["KmsKeyId"] = settings.output_kms_key
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": ref.uri}},
            "ContentType": settings.content_type,
            "SplitType": settings.split_type,
            "CompressionType": "None",
        },
        "TransformOutput": transform_output,
        "TransformResources": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
        },
        "BatchStrategy": settings.batch_strategy,
        "MaxPayloadInMB": settings.max_payload_mb,
    }
    # Dropped on local-storage types (SageMaker refuses it there), so a changed
    # TRANSFORM_INSTANCE_TYPE cannot make every job fail.
    volume_key = volume_kms_key(settings.instance_type, settings.volume_kms_key)
    if volume_key:
        request["TransformResources"]["VolumeKmsKeyId"] = volume_key
    if settings.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = settings.max_concurrent_transforms
    client_config: dict[str, int] = {}
    if settings.invocations_timeout_seconds is not None:
        client_config["InvocationsTimeoutInSeconds"] = settings.invocations_timeout_seconds
    if settings.invocations_max_retries is not None:
        client_config["InvocationsMaxRetries"] = settings.invocations_max_retries
    if client_config:
        request["ModelClientConfig"] = client_config
    return request


def _is_duplicate_name(error: dict[str, Any]) -> bool:
    code = error.get("Code", "")
    message = str(error.get("Message", "")).lower()
    if code == "ResourceInUse":
        return True
    return code == "ValidationException" and any(hint in message for hint in _DUPLICATE_HINTS)


def start_job(sagemaker: Any, request: dict[str, Any]) -> JobOutcome:
    """Create the job, or find the one a previous delivery of the same object created."""
    name = request["TransformJobName"]
    try:
        response = sagemaker.create_transform_job(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if not _is_duplicate_name(error):
            raise JobError(
                f"CreateTransformJob {name} failed: {error.get('Code')}: {error.get('Message')}"
            ) from None
        return _existing(sagemaker, request)
    return JobOutcome(name, True, "InProgress", response.get("TransformJobArn"))


def _existing(sagemaker: Any, request: dict[str, Any]) -> JobOutcome:
    name = request["TransformJobName"]
    try:
        job = sagemaker.describe_transform_job(TransformJobName=name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise JobError(
            f"job {name} already exists but DescribeTransformJob failed: "
            f"{error.get('Code')}: {error.get('Message')}"
        ) from None
    wanted = request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    found = job.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {})
    if found.get("S3Uri") not in (None, wanted):
        raise JobError(
            f"job name {name} is already used by a job for {found.get('S3Uri')}, not {wanted}"
        )
    return JobOutcome(
        name, False, str(job.get("TransformJobStatus", "Unknown")), job.get("TransformJobArn")
    )
