"""Optional customer-managed KMS key for the bucket, the notebook volume and transform output."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# KMS allows 7-30 days between scheduling deletion and deleting the key.
DELETION_WINDOW_PROTECTED = 30
DELETION_WINDOW_DISPOSABLE = 7


@dataclass(frozen=True)
class EncryptionKeyArgs:
    prefix: str
    protect: bool


class EncryptionKey(pulumi.ComponentResource):
    """A rotating symmetric key with an alias.

    The key keeps AWS's default key policy (the account administers it through IAM), so
    access is granted where it is used: the execution role's policy names this key.
    A protected stack also protects the key: deleting it would make the data unreadable.
    """

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:EncryptionKey", name, None, opts)
        key = aws.kms.Key(
            f"{args.prefix}-key",
            description=f"{args.prefix}: model artifacts, transform data, notebook volume",
            enable_key_rotation=True,
            deletion_window_in_days=(
                DELETION_WINDOW_PROTECTED if args.protect else DELETION_WINDOW_DISPOSABLE
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.kms.Alias(
            f"{args.prefix}-key-alias",
            name=f"alias/{args.prefix}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_arn = key.arn
        self.key_id = key.key_id
        self.register_outputs({"key_arn": self.key_arn, "key_id": self.key_id})
