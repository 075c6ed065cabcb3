"""Publish a trained model: upload it, register it as a SageMaker Model, make it current.

- Names: one run id (``<UTC date-time>-<6 hex>``) names the S3 prefix, the model and
  the job, so everything a run made is found together. Model and job names start
  with the stack's job-name prefix (``lambda_handler.naming.stack_prefix``, the one
  the trigger uses), so the stack's notification rule covers the script's jobs too,
  and always match SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``.
- The model runs the stack's digest-pinned image with its execution role and network
  isolation on: the serving container reads /opt/ml/model and answers HTTP on
  localhost, it never needs the network, and isolation keeps a compromised model
  from reaching anything.
- The current-model SSM parameter is pointed at the new model, so uploads to the
  trigger's input prefix use it from then on; its previous value is kept so the
  change can be undone.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambda_handler import naming
from model.cloud.aws import AwsContext
from model.cloud.ledger import Ledger
from model.cloud.outputs import StackOutputs
from model.errors import UserError

DEFAULT_PROJECT = "sagemaker-batch-transform"
RUNS_PREFIX = "runs"


class PublishError(UserError):
    """Uploading or registering the model failed."""


def project_name(project_dir: Path) -> str:
    """The Pulumi project's name (``name:`` in Pulumi.yaml), which the trigger's prefix uses."""
    for file_name in ("Pulumi.yaml", "Pulumi.yml"):
        path = project_dir / file_name
        if path.is_file():
            match = re.search(r"(?m)^name:\s*['\"]?([^'\"\s#]+)", path.read_text(encoding="utf-8"))
            if match:
                return match.group(1)
    return DEFAULT_PROJECT


def job_name_prefix(outputs: StackOutputs, project: str) -> str:
    """The stack's job-name prefix: exported by the stack, else derived like the trigger does."""
    stack = outputs.stack.rsplit("/", 1)[-1]  # "org/dev" -> "dev", as pulumi.get_stack()
    return outputs.transform_job_name_prefix or naming.stack_prefix(project, stack)


@dataclass(frozen=True)
class RunNames:
    """Every name one run uses."""

    run_id: str
    model_name: str
    job_name: str
    prefix: str  # S3 key prefix of the run, ending in "/"

    @property
    def model_key(self) -> str:
        """Where model.tar.gz goes."""
        return f"{self.prefix}model/model.tar.gz"

    @property
    def input_prefix(self) -> str:
        """Where the transform input goes (outside the trigger's input prefix)."""
        return f"{self.prefix}input/"

    @property
    def output_prefix(self) -> str:
        """Where the job writes its ``.out`` files."""
        return f"{self.prefix}output/"


def new_run_names(
    outputs: StackOutputs,
    project: str,
    *,
    now: datetime | None = None,
    token: Callable[[], str] | None = None,
) -> RunNames:
    """Fresh, valid names for one run (the 6 random hex digits keep two runs per second apart)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{(token or (lambda: secrets.token_hex(3)))()}"
    prefix = job_name_prefix(outputs, project)
    joiner = "" if prefix.endswith("-") else "-"
    names = RunNames(
        run_id=run_id,
        model_name=f"{prefix}{joiner}model-{run_id}",
        job_name=f"{prefix}{joiner}run-{run_id}",
        prefix=f"{RUNS_PREFIX}/{outputs.stack.rsplit('/', 1)[-1]}/{run_id}/",
    )
    for name in (names.model_name, names.job_name):
        if not naming.is_valid_job_name(name):
            raise PublishError(
                f"{name!r} is not a valid SageMaker name (transform_job_name_prefix {prefix!r} "
                "is too long or has characters other than letters, digits and hyphens)"
            )
    if outputs.input_prefix and names.input_prefix.startswith(outputs.input_prefix):
        raise PublishError(
            f"the run prefix {names.prefix} lies under the trigger's input prefix "
            f"{outputs.input_prefix}: its uploads would start Lambda jobs"
        )
    return names


def _aws_message(error: Exception) -> str:
    info = (getattr(error, "response", None) or {}).get("Error", {})
    if info:
        return f"{info.get('Code')}: {info.get('Message')}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def upload_file(context: AwsContext, path: Path, bucket: str, key: str) -> dict[str, Any]:
    """PutObject ``path`` to ``s3://bucket/key``; returns the response (ETag, VersionId).

    PutObject rather than a managed transfer: the response's VersionId and ETag are
    what the trigger names its job after (``--via-lambda``), and the files here are
    far below PutObject's 5 GB limit.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with path.open("rb") as body:
            return dict(context.client("s3").put_object(Bucket=bucket, Key=key, Body=body))
    except (ClientError, BotoCoreError) as error:
        raise PublishError(
            f"uploading {path} to s3://{bucket}/{key} failed ({_aws_message(error)})"
        ) from None


def record_prefix(context: AwsContext, ledger: Ledger, bucket: str, prefix: str) -> None:
    """Note in the ledger that the run wrote objects under ``s3://bucket/prefix``."""
    ledger.add(
        "S3 objects",
        f"s3://{bucket}/{prefix}",
        f"aws s3 rm --recursive s3://{bucket}/{prefix} --region {context.region}",
    )


def create_model(
    context: AwsContext,
    outputs: StackOutputs,
    names: RunNames,
    model_data_url: str,
    ledger: Ledger,
    *,
    environment: dict[str, str] | None = None,
) -> str:
    """Create the SageMaker Model through ``sagemaker.core.resources.Model``; returns its ARN."""
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.resources import Model
    from sagemaker.core.shapes import ContainerDefinition

    container = ContainerDefinition(
        image=outputs.image_uri,
        model_data_url=model_data_url,
        **({"environment": environment} if environment else {}),
    )
    try:
        model = Model.create(
            model_name=names.model_name,
            primary_container=container,
            execution_role_arn=outputs.sagemaker_role_arn,
            enable_network_isolation=True,
            tags=[
                {"key": k, "value": v} for k, v in run_tags(outputs, names).items()
            ],  # see job.py
            session=context.session,
            region=context.region,
        )
    except (ClientError, BotoCoreError) as error:
        raise PublishError(
            f"creating SageMaker model {names.model_name} failed ({_aws_message(error)}); "
            "check that your credentials may call sagemaker:CreateModel and iam:PassRole on "
            f"{outputs.sagemaker_role_arn}"
        ) from None
    ledger.add(
        "SageMaker model",
        names.model_name,
        f"aws sagemaker delete-model --model-name {names.model_name} --region {context.region}",
    )
    return str(model.model_arn)


def run_tags(outputs: StackOutputs, names: RunNames) -> dict[str, str]:
    """Tags on the model and the job: find and bill a run's resources together."""
    return {
        "project": DEFAULT_PROJECT,
        "stack": outputs.stack,
        "run-id": names.run_id,
        "managed-by": "scripts/train_and_transform.py",
    }


def point_current_model(
    context: AwsContext, parameter: str, model_name: str, ledger: Ledger
) -> str | None:
    """Write ``model_name`` into the SSM parameter; returns the value it held before."""
    from botocore.exceptions import BotoCoreError, ClientError

    ssm = context.client("ssm")
    previous: str | None = None
    try:
        previous = str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    except ClientError as error:
        if _aws_message(error).split(":")[0] != "ParameterNotFound":
            raise PublishError(
                f"reading SSM parameter {parameter} failed ({_aws_message(error)})"
            ) from None
    except BotoCoreError as error:
        raise PublishError(f"reading SSM parameter {parameter} failed ({error})") from None
    try:
        ssm.put_parameter(Name=parameter, Value=model_name, Type="String", Overwrite=True)
    except (ClientError, BotoCoreError) as error:
        raise PublishError(
            f"pointing SSM parameter {parameter} at {model_name} failed ({_aws_message(error)}); "
            f"the model exists, set it by hand with `aws ssm put-parameter --overwrite --name "
            f"{parameter} --value {model_name} --region {context.region}`"
        ) from None
    undo = (
        f"aws ssm put-parameter --overwrite --name {parameter} --value '{previous}' "
        f"--region {context.region}  # the previous value"
        if previous is not None
        else f"aws ssm delete-parameter --name {parameter} --region {context.region}"
    )
    ledger.add(f"SSM parameter (was {previous!r})", f"{parameter} = {model_name}", undo)
    return previous
