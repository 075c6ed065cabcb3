"""The SageMaker execution role shared by the notebook, models and transform jobs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.documents import assume_role_policy, execution_role_policy, policy_json

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# The notebook's interactive use (creating models, jobs, endpoints from the notebook), as in
# the seed demo. Everything this stack's own resources need is granted by the scoped
# inline policy below, which does not depend on this managed policy.
SAGEMAKER_FULL_ACCESS = "arn:{partition}:iam::aws:policy/AmazonSageMakerFullAccess"


@dataclass(frozen=True)
class ExecutionRoleArgs:
    prefix: str
    bucket_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    secret_arn: pulumi.Input[str] | None = None
    kms_key_arn: pulumi.Input[str] | None = None
    allow_all_buckets: bool = False
    partition: str = "aws"


class ExecutionRole(pulumi.ComponentResource):
    """Role trusted by SageMaker: S3 on this stack's bucket, ECR pull on its repository,
    the GitHub secret and KMS key when there are ones, plus AmazonSageMakerFullAccess.

    Other components reference `role_arn` (the transform trigger's `iam:PassRole`) and may
    attach their own narrow inline policies to `role_name` (the trigger's input/output
    prefix grant); depending on this component (`depends_on=[role]`) waits until every
    policy declared here is attached.
    """

    role_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ExecutionRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:ExecutionRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(
            f"{args.prefix}-sagemaker",
            description=f"{args.prefix}: SageMaker notebook, models and transform jobs",
            assume_role_policy=policy_json(assume_role_policy, service=SAGEMAKER_PRINCIPAL),
            max_session_duration=3600,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{args.prefix}-sagemaker-full-access",
            role=role.name,
            policy_arn=SAGEMAKER_FULL_ACCESS.format(partition=args.partition),
            opts=child,
        )
        inputs: dict[str, pulumi.Input[str]] = {
            "bucket_arn": args.bucket_arn,
            "repository_arn": args.repository_arn,
        }
        if args.secret_arn is not None:
            inputs["secret_arn"] = args.secret_arn
        if args.kms_key_arn is not None:
            inputs["kms_key_arn"] = args.kms_key_arn
        aws.iam.RolePolicy(
            f"{args.prefix}-sagemaker-project-access",
            role=role.name,
            policy=policy_json(
                execution_role_policy, inputs, allow_all_buckets=args.allow_all_buckets
            ),
            opts=child,
        )

        self.role_name = role.name
        self.role_arn = role.arn
        self.register_outputs({"role_name": self.role_name, "role_arn": self.role_arn})
