"""ECR repository plus the serving image, built from `container/` and pushed to it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from infra.documents import ecr_lifecycle_policy, policy_json

# SageMaker runs linux/amd64 images on its x86 instance types (sagemaker-contract.md).
IMAGE_PLATFORM = "linux/amd64"
IMAGE_TAG = "latest"


@dataclass(frozen=True)
class RegistryArgs:
    prefix: str
    force_delete: bool
    keep_images: int
    # The stack's key for the images at rest (None: ECR's AES-256 default).
    kms_key_arn: pulumi.Input[str] | None = None
    # Relative to the project directory, where Pulumi runs the program and the Docker
    # provider: relative paths keep the state identical on every machine.
    context: str = "container"
    dockerfile: str = "container/Dockerfile"


class Registry(pulumi.ComponentResource):
    """A scanned ECR repository that keeps the last N images, and the serving image in it.

    The tag moves with every push, so the exported `image_uri` is the pushed digest
    (`<repository>@sha256:...`): a SageMaker Model made from it always runs exactly the
    image this stack pushed, whatever happens to the tag later.
    """

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_uri: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        repository = aws.ecr.Repository(
            f"{args.prefix}-serving",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            # The tag moves with every push; nothing runs the tag: the exported image_uri and
            # every SageMaker Model name the digest (see the class docstring).
            image_tag_mutability="MUTABLE",
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=args.kms_key_arn
                )
                if args.kms_key_arn is not None
                else aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{args.prefix}-serving-lifecycle",
            repository=repository.name,
            policy=policy_json(ecr_lifecycle_policy, keep_images=args.keep_images),
            opts=child,
        )

        credentials = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker.Image(
            f"{args.prefix}-serving-image",
            image_name=repository.repository_url.apply(lambda url: f"{url}:{IMAGE_TAG}"),
            build=docker.DockerBuildArgs(
                context=args.context,
                dockerfile=args.dockerfile,
                platform=IMAGE_PLATFORM,
            ),
            registry=docker.RegistryArgs(
                server=repository.repository_url,
                username=credentials.user_name,
                password=pulumi.Output.secret(credentials.password),
            ),
            skip_push=False,
            build_on_preview=False,
            opts=child,
        )

        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.image_uri = image.repo_digest
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_arn": self.repository_arn,
                "image_uri": self.image_uri,
            }
        )
