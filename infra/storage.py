"""The S3 buckets: data (model artifacts, transform input/output) and, when asked for, logs.

Both are private, owner-enforced, encrypted, versioned and TLS-only. The log bucket receives
the data bucket's server access logs (`s3AccessLogging`) and the VPC's flow logs
(`vpcFlowLogs`), each under its own prefix, and expires them after `logRetentionDays`. It
uses SSE-S3, not the stack's key: S3 server access logging does not write to SSE-KMS target
buckets (S3 user guide, "Enabling server access logging"), and logs hold request metadata,
not data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.documents import (
    ACCESS_LOGS_PREFIX,
    log_bucket_policy,
    policy_json,
    tls_only_bucket_policy,
)

# Old object versions cost money; a month is enough to undo an overwrite.
NONCURRENT_VERSION_DAYS = 30
ABORT_MULTIPART_DAYS = 7


@dataclass(frozen=True)
class StorageArgs:
    prefix: str
    force_destroy: bool
    protect: bool
    kms_key_arn: pulumi.Input[str] | None = None


def _locked_bucket(
    parent: pulumi.Resource,
    name: str,
    *,
    force_destroy: bool,
    protect: bool,
    kms_key_arn: pulumi.Input[str] | None,
    expire_days: int | None = None,
) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
    """A bucket with ownership enforced, public access blocked, default encryption,
    versioning and a lifecycle rule; returns it and the resources its policy must follow."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(
        name,
        force_destroy=force_destroy,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    by_default = (
        aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
    )
    if kms_key_arn is not None:
        default = by_default(sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn)
    else:
        default = by_default(sse_algorithm="AES256")
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default,
                # One data key per bucket instead of per object: far fewer KMS calls.
                bucket_key_enabled=kms_key_arn is not None,
            )
        ],
        opts=child,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
            status="Enabled"
        ),
        opts=child,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-old-versions-and-uploads",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=(
                    aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=expire_days)
                    if expire_days
                    else None
                ),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=NONCURRENT_VERSION_DAYS
                ),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=ABORT_MULTIPART_DAYS
                ),
            )
        ],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]),
    )
    return bucket, [ownership, public_access]


@dataclass(frozen=True)
class LogBucketArgs:
    """`source_bucket_id`/`_arn`: the bucket whose server access logs land here (None: no
    access logging); `flow_logs`: accept VPC flow log delivery."""

    prefix: str
    force_destroy: bool
    protect: bool
    retention_days: int
    account_id: pulumi.Input[str]
    region: str
    source_bucket_id: pulumi.Input[str] | None = None
    source_bucket_arn: pulumi.Input[str] | None = None
    flow_logs: bool = False


class LogBucket(pulumi.ComponentResource):
    """The separate, locked-down bucket for access logs and flow logs.

    Only S3's logging service (for the data bucket) and VPC log delivery (for this account)
    may write, each under its own prefix; nobody gets read access from this program.
    """

    bucket_id: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: LogBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:LogBucket", name, None, opts)
        bucket, before_policy = _locked_bucket(
            self,
            f"{args.prefix}-logs",
            force_destroy=args.force_destroy,
            protect=args.protect,
            kms_key_arn=None,
            expire_days=args.retention_days,
        )
        inputs: dict[str, pulumi.Input[str]] = {
            "log_bucket_arn": bucket.arn,
            "account_id": args.account_id,
        }
        if args.source_bucket_arn is not None:
            inputs["source_bucket_arn"] = args.source_bucket_arn
        policy = aws.s3.BucketPolicy(
            f"{args.prefix}-logs-policy",
            bucket=bucket.id,
            policy=policy_json(
                log_bucket_policy, inputs, region=args.region, flow_logs=args.flow_logs
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=before_policy),
        )
        if args.source_bucket_id is not None:
            # After the policy: S3 checks it may write to the target when logging is enabled.
            aws.s3.BucketLogging(
                f"{args.prefix}-data-access-logs",
                bucket=args.source_bucket_id,
                target_bucket=bucket.id,
                target_prefix=ACCESS_LOGS_PREFIX,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
        self.bucket_id = bucket.id
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_id": self.bucket_id, "bucket_arn": self.bucket_arn})


class Storage(pulumi.ComponentResource):
    """One private, encrypted, versioned bucket that only accepts TLS.

    `force_destroy` lets `pulumi destroy` empty the bucket (dev); `protect` makes Pulumi
    refuse to delete it at all (prod). The trigger component adds its own
    `aws.s3.BucketNotification`; there can be only one per bucket, so none is declared here.
    """

    bucket_id: pulumi.Output[str]
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Storage", name, None, opts)
        prefix = args.prefix

        bucket, before_policy = _locked_bucket(
            self,
            f"{prefix}-data",
            force_destroy=args.force_destroy,
            protect=args.protect,
            kms_key_arn=args.kms_key_arn,
        )
        aws.s3.BucketPolicy(
            f"{prefix}-data-policy",
            bucket=bucket.id,
            policy=policy_json(tls_only_bucket_policy, {"bucket_arn": bucket.arn}),
            # Ownership and the public access block first, so the policy never lands on a
            # bucket that could still be opened up.
            opts=pulumi.ResourceOptions(parent=self, depends_on=before_policy),
        )

        self.bucket_id = bucket.id
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
