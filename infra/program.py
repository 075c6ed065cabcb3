"""The whole stack: settings first, then the components, then the outputs scripts read."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.encryption import EncryptionKey, EncryptionKeyArgs
from infra.iam import ExecutionRole, ExecutionRoleArgs
from infra.network import Network, NetworkArgs
from infra.notebook import Notebook, NotebookArgs
from infra.registry import Registry, RegistryArgs
from infra.secrets import GitHubSecret, GitHubSecretArgs
from infra.settings import Settings, load_settings
from infra.storage import Storage, StorageArgs
from infra.trigger import TriggerArgs, TriggerComponent, load_trigger_settings


@dataclass(frozen=True)
class Stack:
    """What `build()` declared, for tests and for components added next to these."""

    settings: Settings
    provider: aws.Provider
    network: Network
    storage: Storage
    registry: Registry
    role: ExecutionRole
    notebook: Notebook
    secret: GitHubSecret | None
    key: EncryptionKey | None
    trigger: TriggerComponent


def aws_provider(settings: Settings) -> aws.Provider:
    """The one AWS provider every resource uses; its default tags mark what we manage.

    Explicit rather than `aws:defaultTags` in each stack file: project and stack come from
    the running program, so a new stack is tagged correctly with no config to copy, and
    the stack files disable the default provider so no resource can escape the tags.
    """
    return aws.Provider(
        f"{settings.prefix}-aws",
        region=settings.region,
        profile=settings.aws_profile,
        default_tags=aws.ProviderDefaultTagsArgs(tags=settings.default_tags),
    )


def build() -> Stack:
    """Declare every resource of the stack and export its outputs."""
    settings = load_settings()  # raises before anything is declared
    trigger_settings = load_trigger_settings()  # so does bad trigger config
    prefix = settings.prefix
    provider = aws_provider(settings)
    opts = pulumi.ResourceOptions(providers={"aws": provider})

    key = (
        EncryptionKey(
            f"{prefix}-encryption",
            EncryptionKeyArgs(prefix=prefix, protect=settings.protect_data),
            opts,
        )
        if settings.kms_key
        else None
    )
    key_arn = key.key_arn if key else None
    network = Network(
        f"{prefix}-network", NetworkArgs(prefix=prefix, vpc_cidr=settings.vpc_cidr), opts
    )
    storage = Storage(
        f"{prefix}-storage",
        StorageArgs(
            prefix=prefix,
            force_destroy=settings.force_destroy,
            protect=settings.protect_data,
            kms_key_arn=key_arn,
        ),
        opts,
    )
    registry = Registry(
        f"{prefix}-registry",
        RegistryArgs(
            prefix=prefix, force_delete=settings.force_destroy, keep_images=settings.ecr_keep_images
        ),
        opts,
    )
    secret = None
    if settings.github_token is not None and settings.github_username is not None:
        secret = GitHubSecret(
            f"{prefix}-github",
            GitHubSecretArgs(
                prefix=prefix,
                username=settings.github_username,
                token=settings.github_token,
                protect=settings.protect_data,
                kms_key_arn=key_arn,
            ),
            opts,
        )
    role = ExecutionRole(
        f"{prefix}-iam",
        ExecutionRoleArgs(
            prefix=prefix,
            bucket_arn=storage.bucket_arn,
            repository_arn=registry.repository_arn,
            secret_arn=secret.secret_arn if secret else None,
            kms_key_arn=key_arn,
            allow_all_buckets=settings.allow_all_buckets,
            partition=settings.partition,
        ),
        opts,
    )
    notebook = Notebook(
        f"{prefix}-notebook",
        NotebookArgs(
            prefix=prefix,
            role_arn=role.role_arn,
            subnet_id=network.subnet_ids[0],
            security_group_id=network.security_group_id,
            repository_url=settings.github_repo_url,
            branch=settings.github_branch,
            instance_type=settings.notebook_instance_type,
            volume_size_gb=settings.notebook_volume_size_gb,
            platform_identifier=settings.notebook_platform_identifier,
            root_access=settings.notebook_root_access,
            code_server_version=settings.code_server_version,
            idle_timeout_minutes=settings.idle_timeout_minutes,
            secret_arn=secret.secret_arn if secret else None,
            kms_key_arn=key_arn,
            depends_on=[role, *([secret] if secret else [])],
        ),
        opts,
    )
    # Uploads under the input prefix start transform jobs; results land under the output prefix.
    trigger = TriggerComponent(
        f"{prefix}-trigger",
        TriggerArgs(
            prefix=prefix,
            bucket_name=storage.bucket_name,
            bucket_arn=storage.bucket_arn,
            sagemaker_role_arn=role.role_arn,
            sagemaker_role_name=role.role_name,
            settings=trigger_settings,
            output_kms_key_arn=key_arn,
            region=settings.region,
            partition=settings.partition,
        ),
        opts,
    )

    pulumi.export("region", settings.region)
    pulumi.export("vpc_id", network.vpc_id)
    pulumi.export("subnet_ids", network.subnet_ids)
    pulumi.export("security_group_id", network.security_group_id)
    pulumi.export("bucket_name", storage.bucket_name)
    pulumi.export("ecr_repository_url", registry.repository_url)
    pulumi.export("image_uri", registry.image_uri)
    pulumi.export("sagemaker_role_arn", role.role_arn)
    pulumi.export("notebook_instance_name", notebook.instance_name)
    pulumi.export("notebook_url", notebook.notebook_url)
    pulumi.export("code_server_url", notebook.code_server_url)
    pulumi.export("trigger_function_name", trigger.function_name)
    pulumi.export("input_prefix", trigger.input_prefix)
    pulumi.export("output_prefix", trigger.output_prefix)
    pulumi.export("current_model_parameter", trigger.model_parameter_name)
    pulumi.export("transform_job_name_prefix", trigger.job_name_prefix)
    pulumi.export("failed_events_queue_url", trigger.failed_events_queue_url)
    pulumi.export("notifications_topic_arn", trigger.notifications_topic_arn)
    if secret:
        pulumi.export("github_secret_arn", secret.secret_arn)
    if key:
        # For transform jobs' output encryption (TransformOutput.KmsKeyId).
        pulumi.export("kms_key_arn", key.key_arn)

    return Stack(
        settings=settings,
        provider=provider,
        network=network,
        storage=storage,
        registry=registry,
        role=role,
        notebook=notebook,
        secret=secret,
        key=key,
        trigger=trigger,
    )
