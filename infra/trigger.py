"""Upload a CSV under the input prefix, get predictions under the output prefix.

`TriggerComponent` declares the hands-off path: an S3 bucket notification (input prefix
and suffix only, so results never re-trigger it) invokes the Lambda in
`lambda_handler/`, which starts one SageMaker batch transform job per object using the
model named in an SSM parameter. Events the function could not handle (after Lambda's
retries) land in an SQS queue. The jobs run as the stack's job role (the Models carry it);
the function may pass only that role, and only to SageMaker. Job-state messages are
`infra.notifications`.

With the stack's key, the function's environment, its log group and the queue are
encrypted with it, and the jobs it starts encrypt their output (and, on instance types
without local storage, their volume) with it. `tracing` turns on X-Ray active tracing.

The job parameters are validated with the handler's own `lambda_handler.config.Settings`,
so a value the function would refuse fails `pulumi up` instead of the first upload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.documents import Document, assume_role_policy, policy_json
from infra.grants import pass_job_role
from infra.trigger_config import (
    CONFIG_KEYS,
    NAME_LIMITS,
    TriggerConfigError,
    TriggerSettings,
    load_trigger_settings,
    physical_names,
)
from lambda_handler import naming
from lambda_handler.config import ENV_NAMES, ConfigError
from lambda_handler.instance_storage import has_instance_storage
from lambda_handler.model_parameter import UNSET

__all__ = [
    "CONFIG_KEYS",
    "NAME_LIMITS",
    "TriggerArgs",
    "TriggerComponent",
    "TriggerConfigError",
    "TriggerSettings",
    "load_trigger_settings",
    "physical_names",
    "trigger_role_policy",
]

HANDLER_PACKAGE = Path(__file__).resolve().parent.parent / "lambda_handler"
HANDLER = "lambda_handler.handler.handler"
# Current Lambda Python runtime (Lambda runtimes page: python3.14, Amazon Linux 2023).
RUNTIME = "python3.14"
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
S3_PRINCIPAL = "s3.amazonaws.com"


@dataclass(frozen=True)
class TriggerArgs:
    """Inputs of `TriggerComponent`.

    `prefix` is the stack's resource prefix (`<project>-<stack>`). `job_role_arn` is the
    only role the function may pass (iam:PassRole, to SageMaker only); the job role itself
    grants the jobs the input and output prefixes. `kms_key_arn`: the stack's key (function
    environment, log group, queue, job output and volume); `tracing`: X-Ray active tracing.
    `job_name_prefix` defaults to `lambda_handler.naming.stack_prefix` of the project and
    stack; `account_id`, `region` and `partition` are looked up when not given.
    """

    prefix: str
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    job_role_arn: pulumi.Input[str]
    settings: TriggerSettings = field(default_factory=TriggerSettings)
    kms_key_arn: pulumi.Input[str] | None = None
    tracing: bool = False
    job_name_prefix: str | None = None
    model_parameter_name: str | None = None
    account_id: pulumi.Input[str] | None = None
    region: pulumi.Input[str] | None = None
    partition: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        identity = {name: name for name in CONFIG_KEYS}
        problems = [problem for _, problem in self.settings.problems(identity)]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.prefix):
            problems.append(f"prefix {self.prefix!r} must be lower-case letters, digits, '-'")
        for kind, name in physical_names(self.prefix).items():
            if len(name) > NAME_LIMITS[kind]:
                problems.append(f"prefix {self.prefix!r} makes the {kind} name too long: {name}")
        if self.job_name_prefix is not None:
            try:
                naming.job_name(self.job_name_prefix, "bucket", "key")
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise TriggerConfigError("invalid trigger arguments: " + "; ".join(problems))


def trigger_role_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    job_name_prefix: str,
    instance_type: str,
    parameter_arn: str,
    job_role_arn: str,
    log_group_name: str,
    queue_arn: str,
    kms_key_arn: str | None = None,
    tracing: bool = False,
) -> Document:
    """The function's permissions: nothing beyond what starting this stack's jobs needs.

    CreateTransformJob is limited to job names with this stack's prefix (SageMaker ARNs
    carry names in lower case, as `naming` makes them) and to the configured instance
    type (condition key sagemaker:InstanceTypes). CreateTransformJob takes no role (the
    Model carries the job role), so iam:PassRole is never exercised by today's handler; it
    is limited to the job role and to SageMaker as the receiving service. With the stack's
    key: decrypt its environment, send to the encrypted queue. With tracing: send traces
    (X-Ray's two actions have no resource-level permissions).
    """
    jobs = f"arn:{partition}:sagemaker:{region}:{account_id}:transform-job/{job_name_prefix}*"
    log_streams = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name}:*"
    document: Document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartStackTransformJobs",
                "Effect": "Allow",
                "Action": "sagemaker:CreateTransformJob",
                "Resource": jobs,
                "Condition": {
                    "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": [instance_type]}
                },
            },
            {
                "Sid": "DescribeStackTransformJobs",
                "Effect": "Allow",
                "Action": "sagemaker:DescribeTransformJob",
                "Resource": jobs,
            },
            {
                "Sid": "ReadCurrentModel",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": parameter_arn,
            },
            pass_job_role(job_role_arn),
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": log_streams,
            },
            {
                "Sid": "SendFailedEvents",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
        ],
    }
    if kms_key_arn:
        document["Statement"].append(
            {
                "Sid": "UseStackKeyForEnvironmentAndQueue",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    if tracing:
        document["Statement"].append(
            {
                "Sid": "SendTraces",
                "Effect": "Allow",
                "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
                "Resource": "*",
            }
        )
    return document


def log_group_name(prefix: str) -> str:
    """The function's own log group (the key policy names it for CloudWatch Logs)."""
    return f"/aws/lambda/{physical_names(prefix)['function']}"


class TriggerComponent(pulumi.ComponentResource):
    """Bucket notification -> Lambda -> transform job.

    Children: the function with its role, role policy, log group, S3 permission and
    asynchronous-invoke config (failures to an SQS queue), the bucket notification and the
    current-model SSM parameter.
    """

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    input_prefix: pulumi.Output[str]
    output_prefix: pulumi.Output[str]
    job_name_prefix: pulumi.Output[str]
    model_parameter_name: pulumi.Output[str]
    model_parameter_arn: pulumi.Output[str]
    failed_events_queue_url: pulumi.Output[str]
    failed_events_queue_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: TriggerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Trigger", name, None, opts)
        prefix, settings = args.prefix, args.settings
        project, stack = pulumi.get_project(), pulumi.get_stack()
        job_prefix = args.job_name_prefix or naming.stack_prefix(project, stack)
        parameter_name = args.model_parameter_name or f"/{project}/{stack}/current-model"
        names = physical_names(prefix)
        function_name = names["function"]
        logs = log_group_name(prefix)
        job_settings = settings.job_settings(job_prefix, parameter_name)
        try:
            job_settings.validate()
        except ConfigError as exc:  # only reachable with inconsistent overrides
            raise TriggerConfigError(str(exc)) from None

        def child(**extra: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, **extra)

        invoke = pulumi.InvokeOutputOptions(parent=self)
        account_id = args.account_id or aws.get_caller_identity_output(opts=invoke).account_id
        region = args.region or aws.get_region_output(opts=invoke).region
        partition = args.partition or aws.get_partition_output(opts=invoke).partition
        key = args.kms_key_arn

        # --- where things go and what they may do ------------------------------------
        parameter = aws.ssm.Parameter(
            f"{prefix}-current-model",
            name=parameter_name,
            type="String",
            value=UNSET,
            description=(
                "Name of the SageMaker Model the transform trigger uses; "
                "scripts/train_and_transform.py updates it"
            ),
            # The training script owns the value after creation: `pulumi up` must not reset it.
            opts=child(ignore_changes=["value"]),
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{prefix}-trigger-logs",
            name=logs,
            retention_in_days=settings.log_retention_days,
            kms_key_id=key,
            opts=child(),
        )
        queue = aws.sqs.Queue(
            f"{prefix}-trigger-failed",
            name=names["queue"],
            message_retention_seconds=14 * 24 * 3600,  # SQS's maximum: time to investigate
            # The stack's key when there is one, else SQS-managed SSE (never both).
            kms_master_key_id=key,
            sqs_managed_sse_enabled=None if key is not None else True,
            opts=child(),
        )
        role = aws.iam.Role(
            f"{prefix}-trigger",
            description=f"{prefix}: Lambda that starts transform jobs for uploads",
            assume_role_policy=policy_json(assume_role_policy, service=LAMBDA_PRINCIPAL),
            opts=child(),
        )
        inputs: dict[str, pulumi.Input[str]] = {
            "partition": partition,
            "region": region,
            "account_id": account_id,
            "parameter_arn": parameter.arn,
            "job_role_arn": args.job_role_arn,
            "queue_arn": queue.arn,
        }
        if key is not None:
            inputs["kms_key_arn"] = key
        role_policy = aws.iam.RolePolicy(
            f"{prefix}-trigger-permissions",
            role=role.name,
            policy=policy_json(
                trigger_role_policy,
                inputs,
                job_name_prefix=job_prefix,
                instance_type=settings.instance_type,
                log_group_name=logs,
                tracing=args.tracing,
            ),
            opts=child(),
        )

        # --- the function ----------------------------------------------------------
        environment: dict[str, pulumi.Input[str]] = dict(job_settings.to_env())
        if key is not None:
            environment[ENV_NAMES["output_kms_key"]] = key
            if not has_instance_storage(settings.instance_type):
                environment[ENV_NAMES["volume_kms_key"]] = key
        function = aws.lambda_.Function(
            f"{prefix}-trigger",
            name=function_name,
            description=f"{prefix}: starts a SageMaker transform job per upload",
            role=role.arn,
            runtime=RUNTIME,
            handler=HANDLER,
            code=handler_archive(),
            architectures=["arm64"],  # pure Python: Graviton is cheaper per GB-second
            timeout=settings.timeout_seconds,
            memory_size=settings.memory_mb,
            reserved_concurrent_executions=settings.reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            kms_key_arn=key,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(
                mode="Active" if args.tracing else "PassThrough"
            ),
            # Logs and permissions exist before the first invocation can happen.
            opts=child(depends_on=[log_group, role_policy]),
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{prefix}-trigger-async",
            function_name=function.name,
            maximum_retry_attempts=settings.max_retry_attempts,
            maximum_event_age_in_seconds=settings.max_event_age_seconds,
            destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                    destination=queue.arn
                )
            ),
            # Lambda checks the role may send to the destination when this is created.
            opts=child(depends_on=[role_policy]),
        )
        permission = aws.lambda_.Permission(
            f"{prefix}-trigger-from-s3",
            action="lambda:InvokeFunction",
            function=function.name,
            principal=S3_PRINCIPAL,
            source_arn=args.bucket_arn,
            source_account=account_id,
            opts=child(),
        )
        aws.s3.BucketNotification(
            f"{prefix}-trigger-uploads",
            bucket=args.bucket_name,
            lambda_functions=[
                aws.s3.BucketNotificationLambdaFunctionArgs(
                    lambda_function_arn=function.arn,
                    events=["s3:ObjectCreated:*"],
                    filter_prefix=settings.input_prefix,
                    filter_suffix=settings.input_suffix or None,
                )
            ],
            # S3 test-invokes the function when the notification is saved.
            opts=child(depends_on=[permission]),
        )

        self.function_name = function.name
        self.function_arn = function.arn
        self.input_prefix = pulumi.Output.from_input(settings.input_prefix)
        self.output_prefix = pulumi.Output.from_input(settings.output_prefix)
        self.job_name_prefix = pulumi.Output.from_input(job_prefix)
        self.model_parameter_name = parameter.name
        self.model_parameter_arn = parameter.arn
        self.failed_events_queue_url = queue.url
        self.failed_events_queue_arn = queue.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "function_name": self.function_name,
                "input_prefix": self.input_prefix,
                "output_prefix": self.output_prefix,
                "job_name_prefix": self.job_name_prefix,
                "model_parameter_name": self.model_parameter_name,
                "failed_events_queue_url": self.failed_events_queue_url,
            }
        )


def handler_archive() -> pulumi.AssetArchive:
    """The deployment package: `lambda_handler/*.py` at `lambda_handler/` in the zip.

    Sources only: bytecode caches would change the archive's hash on every machine.
    """
    files = sorted(HANDLER_PACKAGE.glob("*.py"))
    if not any(f.name == "handler.py" for f in files):
        raise TriggerConfigError(f"no handler.py in {HANDLER_PACKAGE}")
    return pulumi.AssetArchive(
        {f"lambda_handler/{f.name}": pulumi.FileAsset(str(f)) for f in files}
    )
