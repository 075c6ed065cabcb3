"""The whole stack: settings first, then the components, then the outputs scripts read."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.encryption import EncryptionKey, EncryptionKeyArgs
from infra.iam import JobRole, JobRoleArgs, NotebookRole, NotebookRoleArgs
from infra.network import Network, NetworkArgs
from infra.notebook import Notebook, NotebookArgs, instance_name
from infra.notifications import Notifications, NotificationsArgs
from infra.registry import Registry, RegistryArgs
from infra.secrets import GitHubSecret, GitHubSecretArgs
from infra.settings import Settings, load_settings
from infra.storage import LogBucket, LogBucketArgs, Storage, StorageArgs
from infra.trigger import TriggerArgs, TriggerComponent, load_trigger_settings, log_group_name
from infra.trigger_config import TriggerSettings
from lambda_handler import naming

# Where `scripts/train_and_transform.py --stack` keeps each run (model.cloud.publish):
# runs/<stack>/<run id>/{model,input,output}/. The job role reads and writes only these
# and the trigger's prefixes.
RUNS_PREFIX = "runs"


@dataclass(frozen=True)
class Stack:
    """What `build()` declared, for tests and for components added next to these."""

    settings: Settings
    provider: aws.Provider
    network: Network
    storage: Storage
    logs: LogBucket | None
    registry: Registry
    job_role: JobRole
    notebook_role: NotebookRole
    notebook: Notebook
    secret: GitHubSecret | None
    key: EncryptionKey | None
    trigger: TriggerComponent
    notifications: Notifications


def job_prefixes(stack: str, trigger: TriggerSettings) -> tuple[list[str], list[str]]:
    """(read, write) key prefixes of the transform jobs: the script's runs and the trigger's."""
    runs = f"{RUNS_PREFIX}/{stack}/*/"
    return (
        [f"{runs}model/", f"{runs}input/", trigger.input_prefix],
        [f"{runs}output/", trigger.output_prefix],
    )


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
    prefix, region, partition = settings.prefix, settings.region, settings.partition
    job_name_prefix = naming.stack_prefix(settings.project, settings.stack)
    provider = aws_provider(settings)
    opts = pulumi.ResourceOptions(providers={"aws": provider})
    account_id = aws.get_caller_identity_output(
        opts=pulumi.InvokeOutputOptions(provider=provider)
    ).account_id
    located = {"account_id": account_id, "region": region}

    key = (
        EncryptionKey(
            f"{prefix}-encryption",
            EncryptionKeyArgs(
                prefix=prefix,
                protect=settings.protect_data,
                partition=partition,
                log_group_names=[log_group_name(prefix)],
                **located,
            ),
            opts,
        )
        if settings.kms_key
        else None
    )
    key_arn = key.key_arn if key else None
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
    logs = None
    if settings.access_logging or settings.flow_logs:
        logs = LogBucket(
            f"{prefix}-logs",
            LogBucketArgs(
                prefix=prefix,
                force_destroy=settings.force_destroy,
                protect=settings.protect_data,
                retention_days=settings.log_retention_days,
                source_bucket_id=storage.bucket_id if settings.access_logging else None,
                source_bucket_arn=storage.bucket_arn if settings.access_logging else None,
                flow_logs=settings.flow_logs,
                **located,
            ),
            opts,
        )
    network = Network(
        f"{prefix}-network",
        NetworkArgs(
            prefix=prefix,
            vpc_cidr=settings.vpc_cidr,
            flow_logs_bucket_arn=logs.bucket_arn if logs and settings.flow_logs else None,
            flow_logs_after=[logs] if logs else [],
        ),
        opts,
    )
    registry = Registry(
        f"{prefix}-registry",
        RegistryArgs(
            prefix=prefix,
            force_delete=settings.force_destroy,
            keep_images=settings.ecr_keep_images,
            kms_key_arn=key_arn,
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
    read_prefixes, write_prefixes = job_prefixes(settings.stack, trigger_settings)
    job_role = JobRole(
        f"{prefix}-job-role",
        JobRoleArgs(
            prefix=prefix,
            partition=partition,
            bucket_arn=storage.bucket_arn,
            repository_arn=registry.repository_arn,
            job_name_prefix=job_name_prefix,
            read_prefixes=read_prefixes,
            write_prefixes=write_prefixes,
            kms_key_arn=key_arn,
            **located,
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
            job_role_arn=job_role.role_arn,
            settings=trigger_settings,
            kms_key_arn=key_arn,
            tracing=settings.lambda_tracing,
            job_name_prefix=job_name_prefix,
            partition=partition,
            **located,
        ),
        opts,
    )
    notifications = Notifications(
        f"{prefix}-notifications",
        NotificationsArgs(
            prefix=prefix,
            job_name_prefix=job_name_prefix,
            email=trigger_settings.notification_email,
            kms_key_arn=key_arn,
        ),
        opts,
    )
    notebook_role = NotebookRole(
        f"{prefix}-notebook-role",
        NotebookRoleArgs(
            prefix=prefix,
            partition=partition,
            bucket_arn=storage.bucket_arn,
            repository_arn=registry.repository_arn,
            job_role_arn=job_role.role_arn,
            job_name_prefix=job_name_prefix,
            notebook_name=instance_name(prefix),
            parameter_arn=trigger.model_parameter_arn,
            secret_arn=secret.secret_arn if secret else None,
            kms_key_arn=key_arn,
            allow_all_buckets=settings.allow_all_buckets,
            sagemaker_full_access=settings.notebook_full_access,
            **located,
        ),
        opts,
    )
    notebook = Notebook(
        f"{prefix}-notebook",
        NotebookArgs(
            prefix=prefix,
            role_arn=notebook_role.role_arn,
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
            depends_on=[notebook_role, *([secret] if secret else [])],
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
    pulumi.export("job_role_arn", job_role.role_arn)
    pulumi.export("notebook_role_arn", notebook_role.role_arn)
    # The role SageMaker Models (and so transform jobs) run as: the job role. Kept under its
    # old name because model/cloud/outputs.py and existing scripts read it.
    pulumi.export("sagemaker_role_arn", job_role.role_arn)
    pulumi.export("notebook_instance_name", notebook.instance_name)
    pulumi.export("notebook_url", notebook.notebook_url)
    pulumi.export("code_server_url", notebook.code_server_url)
    pulumi.export("trigger_function_name", trigger.function_name)
    pulumi.export("input_prefix", trigger.input_prefix)
    pulumi.export("output_prefix", trigger.output_prefix)
    pulumi.export("current_model_parameter", trigger.model_parameter_name)
    pulumi.export("transform_job_name_prefix", trigger.job_name_prefix)
    pulumi.export("failed_events_queue_url", trigger.failed_events_queue_url)
    pulumi.export("notifications_topic_arn", notifications.topic_arn)
    if logs:
        pulumi.export("log_bucket_name", logs.bucket_id)
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
        logs=logs,
        registry=registry,
        job_role=job_role,
        notebook_role=notebook_role,
        notebook=notebook,
        secret=secret,
        key=key,
        trigger=trigger,
        notifications=notifications,
    )
