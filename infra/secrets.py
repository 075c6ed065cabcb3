"""The GitHub token for a private repository, as a Secrets Manager secret SageMaker can read."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Secrets Manager: 0 deletes at once, otherwise a 7-30 day recovery window.
RECOVERY_WINDOW_PROTECTED = 30


@dataclass(frozen=True)
class GitHubSecretArgs:
    prefix: str
    username: str
    # A Pulumi secret: the value is encrypted in the state and masked in every log.
    token: pulumi.Output[str]
    protect: bool
    kms_key_arn: pulumi.Input[str] | None = None


class GitHubSecret(pulumi.ComponentResource):
    """`{"username": ..., "password": <token>}`, the shape a SageMaker CodeRepository reads.

    Only declared when `githubToken` is set; a public repository needs no secret.
    """

    secret_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: GitHubSecretArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:GitHubSecret", name, None, opts)
        secret = aws.secretsmanager.Secret(
            f"{args.prefix}-github",
            description=f"{args.prefix}: GitHub credentials for the SageMaker code repository",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=RECOVERY_WINDOW_PROTECTED if args.protect else 0,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.secretsmanager.SecretVersion(
            f"{args.prefix}-github-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(
                pulumi.Output.json_dumps({"username": args.username, "password": args.token})
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.secret_arn = secret.arn
        self.register_outputs({"secret_arn": self.secret_arn})
