"""One boto3 session for the run: created lazily, in the stack's region, checked up front.

Clients are created on first use (so tests can start moto first) and all in the
region the stack was deployed to, whatever the user's AWS configuration says: the
bucket, the image and the role only exist there. ``check_access`` runs before any
training so a missing credential, another account or a stale set of outputs is
reported in one line within seconds, not after the model is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model.errors import UserError

if TYPE_CHECKING:
    import boto3

    from model.cloud.outputs import StackOutputs

CREDENTIALS_HELP = (
    "configure them with `aws configure` or `aws sso login --profile NAME` and set "
    "AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


class AwsError(UserError):
    """Credentials, account or region do not fit the stack."""


@dataclass(frozen=True)
class Identity:
    """Who the credentials belong to."""

    account: str
    arn: str


class AwsContext:
    """The run's boto3 session and clients, all bound to ``region``."""

    def __init__(self, region: str, *, session: boto3.Session | None = None) -> None:
        self.region = region
        self._session = session
        self._clients: dict[str, Any] = {}

    @property
    def session(self) -> boto3.Session:
        """The boto3 session (default credential chain, the stack's region)."""
        if self._session is None:
            import boto3

            self._session = boto3.Session(region_name=self.region)
        return self._session

    def client(self, service: str) -> Any:
        """A boto3 client for ``service``; SageMaker's is the one the SDK uses too."""
        if service not in self._clients:
            if service == "sagemaker":
                self._clients[service] = self.sdk_client()
            else:
                from botocore.config import Config

                config = Config(retries={"mode": "standard", "max_attempts": 8})
                self._clients[service] = self.session.client(
                    service, region_name=self.region, config=config
                )
        return self._clients[service]

    def sdk_client(self) -> Any:
        """The SageMaker client ``sagemaker.core.resources`` uses for this session and region.

        The SDK caches one client per (session, region); asking for it here means our
        own calls (stop, describe) and the SDK's go through the same client, which is
        also what a test's botocore Stubber must be attached to.
        """
        from sagemaker.core.utils.utils import SageMakerClient

        return SageMakerClient(session=self.session, region_name=self.region).get_client(
            "sagemaker"
        )

    def configured_region(self) -> str | None:
        """The region the user's AWS configuration names (env or profile), if any."""
        import boto3

        try:
            return boto3.Session().region_name
        except Exception:  # a broken profile is reported by the credential check
            return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _client_error(error: Exception) -> tuple[str, str]:
    response = getattr(error, "response", None) or {}
    info = response.get("Error", {})
    return str(info.get("Code", type(error).__name__)), str(info.get("Message", error))


def check_credentials(context: AwsContext) -> Identity:
    """The caller's identity; AwsError when there are no usable credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        credentials = context.session.get_credentials()
    except BotoCoreError as error:  # e.g. a profile that does not exist
        raise AwsError(f"AWS credentials cannot be loaded ({error}): {CREDENTIALS_HELP}") from None
    if credentials is None:
        raise AwsError(f"no AWS credentials found: {CREDENTIALS_HELP}")
    try:
        response = context.client("sts").get_caller_identity()
    except NoCredentialsError:
        raise AwsError(f"no AWS credentials found: {CREDENTIALS_HELP}") from None
    except ClientError as error:
        code, message = _client_error(error)
        raise AwsError(
            f"AWS rejected the credentials ({code}: {message}): they may have expired; "
            f"{CREDENTIALS_HELP}"
        ) from None
    except BotoCoreError as error:
        raise AwsError(
            f"cannot reach AWS STS in {context.region} ({error}): check the network and the "
            "stack's region"
        ) from None
    return Identity(account=str(response["Account"]), arn=str(response["Arn"]))


def check_access(context: AwsContext, outputs: StackOutputs) -> tuple[Identity, list[str]]:
    """Credentials, account and region fit the stack; returns the identity and notes to show.

    - no or rejected credentials: AwsError;
    - credentials of another account than the stack's (from the role ARN): AwsError;
    - the bucket missing or in another region than the outputs say: AwsError (the
      outputs are stale or belong to another deployment);
    - the user's configured region differs from the stack's: a note (the stack's wins).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    identity = check_credentials(context)
    notes: list[str] = []
    if outputs.account_id and outputs.account_id != identity.account:
        raise AwsError(
            f"your AWS credentials are for account {identity.account} ({identity.arn}) but stack "
            f"{outputs.stack!r} is deployed in account {outputs.account_id}: use that account's "
            "credentials (e.g. AWS_PROFILE=<profile of that account>)"
        )
    configured = context.configured_region()
    if configured and configured != context.region:
        notes.append(
            f"using the stack's region {context.region} (your AWS configuration says {configured})"
        )
    bucket = outputs.bucket_name
    try:
        location = context.client("s3").get_bucket_location(Bucket=bucket)
    except ClientError as error:
        code, message = _client_error(error)
        if code in ("NoSuchBucket", "404"):
            raise AwsError(
                f"bucket {bucket} from stack {outputs.stack!r} does not exist: the outputs are "
                f"stale or the stack was destroyed; run `pulumi up --stack {outputs.stack}`"
            ) from None
        raise AwsError(
            f"cannot read bucket {bucket} ({code}: {message}): the credentials need S3 access "
            "to the stack's bucket"
        ) from None
    except BotoCoreError as error:
        raise AwsError(f"cannot reach S3 in {context.region} ({error})") from None
    bucket_region = location.get("LocationConstraint") or "us-east-1"
    if bucket_region == "EU":  # the legacy name S3 still reports for old eu-west-1 buckets
        bucket_region = "eu-west-1"
    if bucket_region != context.region:
        raise AwsError(
            f"wrong region: bucket {bucket} is in {bucket_region} but stack {outputs.stack!r} "
            f"says {context.region}: the outputs belong to another deployment; read them again "
            "(`pulumi stack output --json`) or pass the right --stack"
        )
    return identity, notes
