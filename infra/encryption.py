"""Optional customer-managed KMS key for everything in the stack that holds data or messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.documents import policy_json
from infra.grants import key_policy

# KMS allows 7-30 days between scheduling deletion and deleting the key.
DELETION_WINDOW_PROTECTED = 30
DELETION_WINDOW_DISPOSABLE = 7


@dataclass(frozen=True)
class EncryptionKeyArgs:
    """`log_group_names`: the stack's CloudWatch log groups the key encrypts (the key policy
    lets CloudWatch Logs use the key for exactly these)."""

    prefix: str
    protect: bool
    account_id: pulumi.Input[str]
    region: str
    partition: str = "aws"
    log_group_names: Sequence[str] = field(default_factory=tuple)


class EncryptionKey(pulumi.ComponentResource):
    """A rotating symmetric key with an alias and an explicit key policy.

    The policy (`infra.grants.key_policy`) keeps the account's IAM administration and adds
    only the services that call KMS themselves: CloudWatch Logs for the stack's log groups
    and EventBridge for the encrypted SNS topic. Roles get the key in their own IAM
    policies. A protected stack also protects the key: deleting it would make the data
    unreadable.
    """

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:EncryptionKey", name, None, opts)
        key = aws.kms.Key(
            f"{args.prefix}-key",
            description=f"{args.prefix}: data, messages, logs, images and volumes of the stack",
            enable_key_rotation=True,
            deletion_window_in_days=(
                DELETION_WINDOW_PROTECTED if args.protect else DELETION_WINDOW_DISPOSABLE
            ),
            policy=policy_json(
                key_policy,
                {"account_id": args.account_id},
                partition=args.partition,
                region=args.region,
                log_group_names=list(args.log_group_names),
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
