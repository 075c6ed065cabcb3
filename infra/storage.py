"""The S3 bucket for model artifacts and transform input/output, locked down by default."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.documents import policy_json, tls_only_bucket_policy

# Old object versions cost money; a month is enough to undo an overwrite.
NONCURRENT_VERSION_DAYS = 30
ABORT_MULTIPART_DAYS = 7


@dataclass(frozen=True)
class StorageArgs:
    prefix: str
    force_destroy: bool
    protect: bool
    kms_key_arn: pulumi.Input[str] | None = None


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
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix

        bucket = aws.s3.Bucket(
            f"{prefix}-data",
            force_destroy=args.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{prefix}-data-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{prefix}-data-public-access",
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
        if args.kms_key_arn is not None:
            default = by_default(sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn)
        else:
            default = by_default(sse_algorithm="AES256")
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{prefix}-data-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=default,
                    # One data key per bucket instead of per object: far fewer KMS calls.
                    bucket_key_enabled=args.kms_key_arn is not None,
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{prefix}-data-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{prefix}-data-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions-and-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=NONCURRENT_VERSION_DAYS
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=ABORT_MULTIPART_DAYS
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{prefix}-data-policy",
            bucket=bucket.id,
            policy=policy_json(tls_only_bucket_policy, {"bucket_arn": bucket.arn}),
            # Ownership and the public access block first, so the policy never lands on a
            # bucket that could still be opened up.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ownership, public_access]),
        )

        self.bucket_id = bucket.id
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
