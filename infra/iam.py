"""The two SageMaker roles: one for transform jobs, one for the notebook (issue 14's split).

Transform jobs (the SageMaker Models the cloud script creates, and so the jobs the Lambda
starts from them) run as the **job role**; the notebook instance runs as the **notebook
role**. Only the notebook role can carry AWS's AmazonSageMakerFullAccess, and only when
`notebookSageMakerFullAccess` is set: it grants, among much else, S3 on every bucket whose
name contains "sagemaker", which a container that reads one prefix never needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.documents import assume_role_policy, policy_json
from infra.grants import SAGEMAKER_PRINCIPAL, job_role_policy, notebook_role_policy

SAGEMAKER_FULL_ACCESS = "arn:{partition}:iam::aws:policy/AmazonSageMakerFullAccess"
# One hour: the longest a SageMaker-assumed session needs between refreshes.
MAX_SESSION_SECONDS = 3600


def _inputs(**values: pulumi.Input[str] | None) -> dict[str, pulumi.Input[str]]:
    return {key: value for key, value in values.items() if value is not None}


def _sagemaker_role(parent: pulumi.Resource, name: str, description: str) -> aws.iam.Role:
    return aws.iam.Role(
        name,
        description=description,
        assume_role_policy=policy_json(assume_role_policy, service=SAGEMAKER_PRINCIPAL),
        max_session_duration=MAX_SESSION_SECONDS,
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class JobRoleArgs:
    """`read_prefixes` / `write_prefixes`: bucket key prefixes (wildcards allowed, e.g.
    `runs/dev/*/model/`) the jobs read (model, input) and write (output)."""

    prefix: str
    account_id: pulumi.Input[str]
    region: str
    partition: str
    bucket_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    job_name_prefix: str
    read_prefixes: Sequence[str]
    write_prefixes: Sequence[str]
    kms_key_arn: pulumi.Input[str] | None = None


class JobRole(pulumi.ComponentResource):
    """Role of the SageMaker Models and so of every transform job of the stack."""

    role_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: JobRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:JobRole", name, None, opts)
        role = _sagemaker_role(
            self, f"{args.prefix}-job", f"{args.prefix}: SageMaker models and transform jobs"
        )
        aws.iam.RolePolicy(
            f"{args.prefix}-job-access",
            role=role.name,
            policy=policy_json(
                job_role_policy,
                _inputs(
                    account_id=args.account_id,
                    bucket_arn=args.bucket_arn,
                    repository_arn=args.repository_arn,
                    kms_key_arn=args.kms_key_arn,
                ),
                partition=args.partition,
                region=args.region,
                job_name_prefix=args.job_name_prefix,
                read_prefixes=list(args.read_prefixes),
                write_prefixes=list(args.write_prefixes),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_name = role.name
        self.role_arn = role.arn
        self.register_outputs({"role_name": self.role_name, "role_arn": self.role_arn})


@dataclass(frozen=True)
class NotebookRoleArgs:
    prefix: str
    account_id: pulumi.Input[str]
    region: str
    partition: str
    bucket_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    job_role_arn: pulumi.Input[str]
    job_name_prefix: str
    notebook_name: str
    parameter_arn: pulumi.Input[str]
    secret_arn: pulumi.Input[str] | None = None
    kms_key_arn: pulumi.Input[str] | None = None
    allow_all_buckets: bool = False
    sagemaker_full_access: bool = False


class NotebookRole(pulumi.ComponentResource):
    """Role of the notebook instance: this stack's data, models, jobs, logs and secret.

    Depending on this component (`depends_on=[role]`) waits until its policies are attached,
    so the lifecycle scripts and the git clone run with them.
    """

    role_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: NotebookRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:NotebookRole", name, None, opts)
        role = _sagemaker_role(
            self, f"{args.prefix}-notebook", f"{args.prefix}: SageMaker notebook instance"
        )
        if args.sagemaker_full_access:
            aws.iam.RolePolicyAttachment(
                f"{args.prefix}-notebook-full-access",
                role=role.name,
                policy_arn=SAGEMAKER_FULL_ACCESS.format(partition=args.partition),
                opts=pulumi.ResourceOptions(parent=self),
            )
        aws.iam.RolePolicy(
            f"{args.prefix}-notebook-access",
            role=role.name,
            policy=policy_json(
                notebook_role_policy,
                _inputs(
                    account_id=args.account_id,
                    bucket_arn=args.bucket_arn,
                    repository_arn=args.repository_arn,
                    job_role_arn=args.job_role_arn,
                    parameter_arn=args.parameter_arn,
                    secret_arn=args.secret_arn,
                    kms_key_arn=args.kms_key_arn,
                ),
                partition=args.partition,
                region=args.region,
                job_name_prefix=args.job_name_prefix,
                notebook_name=args.notebook_name,
                allow_all_buckets=args.allow_all_buckets,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_name = role.name
        self.role_arn = role.arn
        self.register_outputs({"role_name": self.role_name, "role_arn": self.role_arn})
