"""Upload a CSV under the input prefix, get predictions under the output prefix.

`TriggerComponent` declares the hands-off path: an S3 bucket notification (input prefix
and suffix only, so results never re-trigger it) invokes the Lambda in
`lambda_handler/`, which starts one SageMaker batch transform job per object using the
model named in an SSM parameter. Events the function could not handle (after Lambda's
retries) land in an SQS queue. SageMaker's "Transform Job State Change" events for this
stack's jobs are turned into short messages on an SNS topic users subscribe to.

The job parameters are validated with the handler's own `lambda_handler.config.Settings`,
so a value the function would refuse fails `pulumi up` instead of the first upload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.documents import (
    Document,
    assume_role_policy,
    policy_json,
    s3_prefix_access_policy,
)
from lambda_handler import naming
from lambda_handler.config import ENV_NAMES, ConfigError, Settings
from lambda_handler.model_parameter import UNSET

__all__ = [
    "CONFIG_KEYS",
    "JOB_STATE_DETAIL_TYPE",
    "NAME_LIMITS",
    "TriggerArgs",
    "TriggerComponent",
    "TriggerConfigError",
    "TriggerSettings",
    "failure_message_template",
    "job_state_pattern",
    "load_trigger_settings",
    "notifications_topic_policy",
    "physical_names",
    "success_message_template",
    "trigger_role_policy",
]

HANDLER_PACKAGE = Path(__file__).resolve().parent.parent / "lambda_handler"
HANDLER = "lambda_handler.handler.handler"
# Current Lambda Python runtime (Lambda runtimes page: python3.14, Amazon Linux 2023).
RUNTIME = "python3.14"
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
S3_PRINCIPAL = "s3.amazonaws.com"
EVENTS_PRINCIPAL = "events.amazonaws.com"
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
JOB_STATE_DETAIL_TYPE = "SageMaker Transform Job State Change"
FINISHED_STATUSES = ("Completed", "Stopped")
FAILED_STATUSES = ("Failed",)
# CloudWatch Logs PutRetentionPolicy accepts only these day counts.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# S3 notification filters take URL-encoded values; keeping prefixes to these characters
# means the configured string is exactly what S3 compares.
_SAFE_KEY_PART = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class TriggerSettings:
    """Plain, validated values from the stack's config (see `CONFIG_KEYS`)."""

    input_prefix: str = "transform/input/"
    output_prefix: str = "transform/output/"
    input_suffix: str = ".csv"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    content_type: str = "text/csv"
    split_type: str = "Line"
    batch_strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 0
    assemble_with: str = "Line"
    accept: str = "text/csv"
    timeout_seconds: int = 60
    memory_mb: int = 256
    log_retention_days: int = 30
    reserved_concurrency: int = -1
    max_retry_attempts: int = 2
    max_event_age_seconds: int = 3600
    notification_email: str = ""

    def job_settings(self, job_name_prefix: str, model_parameter: str) -> Settings:
        """The handler's view of these values (what its environment will hold)."""
        return Settings(
            job_name_prefix=job_name_prefix,
            input_prefix=self.input_prefix,
            output_prefix=self.output_prefix,
            input_suffix=self.input_suffix,
            model_parameter=model_parameter,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            content_type=self.content_type,
            split_type=self.split_type,
            batch_strategy=self.batch_strategy,
            max_payload_mb=self.max_payload_mb,
            max_concurrent_transforms=self.max_concurrent_transforms,
            assemble_with=self.assemble_with,
            accept=self.accept,
        )

    def problems(self, names: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """(field, sentence) for every value Lambda, S3 or SageMaker would refuse.

        `names` maps fields to the names the user knows (config keys by default), so
        the sentences speak of `triggerMemoryMb`, not of an environment variable.
        """
        names = names or CONFIG_KEYS
        out: list[tuple[str, str]] = []

        def bad(name: str, problem: str) -> None:
            out.append((name, f"{names[name]} {problem} (got {getattr(self, name)!r})"))

        for name in ("input_prefix", "output_prefix", "input_suffix"):
            if not _SAFE_KEY_PART.fullmatch(getattr(self, name)):
                bad(name, "may use only letters, digits and !_.*'()/- (S3 filter rules)")
        if not 1 <= self.timeout_seconds <= 900:
            bad("timeout_seconds", "must be 1-900 seconds (Lambda's limit)")
        if not 128 <= self.memory_mb <= 10240:
            bad("memory_mb", "must be 128-10240 MB (Lambda's limit)")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            bad("log_retention_days", f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        if self.reserved_concurrency != -1 and self.reserved_concurrency < 1:
            bad("reserved_concurrency", "must be -1 (no reservation) or at least 1")
        if not 0 <= self.max_retry_attempts <= 2:
            bad("max_retry_attempts", "must be 0-2 (Lambda's asynchronous retries)")
        if not 60 <= self.max_event_age_seconds <= 21600:
            bad("max_event_age_seconds", "must be 60-21600 seconds")
        if self.notification_email and not _EMAIL.fullmatch(self.notification_email):
            bad("notification_email", "must be an email address or empty")
        # The job parameters: exactly the handler's own checks, in the user's names.
        job = self.job_settings(naming.stack_prefix("project", "stack"), "/parameter")
        ours = {f: v for f, v in ENV_NAMES.items() if f in names}
        defaults = TriggerSettings()
        for problem in job.problems():
            # The fields named, in the order the sentence names them; the one to fix is the
            # first that was changed from its default.
            mentioned = sorted(
                (f for f, variable in ours.items() if variable in problem),
                key=lambda f: problem.index(ours[f]),
            )
            for f in mentioned:
                problem = problem.replace(ours[f], names[f])
            changed = [f for f in mentioned if getattr(self, f) != getattr(defaults, f)]
            out.append(((changed or mentioned or ["input_prefix"])[0], problem))
        return out


# TriggerSettings field -> project config key (Pulumi.yaml `config:` schema).
CONFIG_KEYS: dict[str, str] = {
    "input_prefix": "triggerInputPrefix",
    "output_prefix": "triggerOutputPrefix",
    "input_suffix": "triggerInputSuffix",
    "instance_type": "transformInstanceType",
    "instance_count": "transformInstanceCount",
    "content_type": "transformContentType",
    "split_type": "transformSplitType",
    "batch_strategy": "transformBatchStrategy",
    "max_payload_mb": "transformMaxPayloadMb",
    "max_concurrent_transforms": "transformMaxConcurrentTransforms",
    "assemble_with": "transformAssembleWith",
    "accept": "transformAccept",
    "timeout_seconds": "triggerTimeoutSeconds",
    "memory_mb": "triggerMemoryMb",
    "log_retention_days": "triggerLogRetentionDays",
    "reserved_concurrency": "triggerReservedConcurrency",
    "max_retry_attempts": "triggerMaxRetryAttempts",
    "max_event_age_seconds": "triggerMaxEventAgeSeconds",
    "notification_email": "notificationEmail",
}


class TriggerConfigError(pulumi.RunError):
    """Bad trigger configuration; a RunError, so Pulumi prints one message, no traceback."""


def load_trigger_settings(config: pulumi.Config | None = None) -> TriggerSettings:
    """Read the trigger's keys from the stack config; raise listing every bad one.

    Call it next to the program's other settings, before any resource is declared.
    Unset keys take the `TriggerSettings` defaults (the same as Pulumi.yaml's).
    """
    config = config or pulumi.Config()
    defaults = TriggerSettings()
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, key in CONFIG_KEYS.items():
        default = getattr(defaults, name)
        raw = config.get(key)
        if raw is None or (raw.strip() == "" and not isinstance(default, str)):
            continue
        if isinstance(default, int):
            try:
                values[name] = int(raw.strip())
            except ValueError:
                errors.append(
                    f"config {key} must be a whole number (got {raw!r}); "
                    f"fix: pulumi config set {key} {default}"
                )
        else:
            values[name] = raw.strip()
    settings = TriggerSettings(**values)
    for name, problem in settings.problems():
        key = CONFIG_KEYS[name]
        example = getattr(defaults, name)
        errors.append(
            f"config {problem}; fix: pulumi config set {key} "
            f"{example if example != '' else '<value>'}"
        )
    if errors:
        raise TriggerConfigError("\n".join(dict.fromkeys(errors)))
    return settings


# AWS limits on the physical names this component sets (Lambda function and EventBridge
# rule 64, SQS queue 80, SNS topic 256); IAM role names get Pulumi's 8-char suffix.
NAME_LIMITS = {"function": 64, "queue": 80, "topic": 256, "rule": 64, "role": 64 - 8}


def physical_names(prefix: str) -> dict[str, str]:
    """The names the component gives its resources, from the stack's resource prefix."""
    return {
        "function": f"{prefix}-trigger",
        "queue": f"{prefix}-trigger-failed",
        "topic": f"{prefix}-transform-jobs",
        "rule": f"{prefix}-transform-finished",  # the longer of the two rule names
        "role": f"{prefix}-trigger",
    }


@dataclass(frozen=True)
class TriggerArgs:
    """Inputs of `TriggerComponent`.

    `prefix` is the stack's resource prefix (`<project>-<stack>`). The SageMaker
    execution role's ARN is what the function may pass (iam:PassRole); when its name is
    given too, the role gets an inline policy reading the input prefix and writing the
    output prefix. `job_name_prefix` defaults to `lambda_handler.naming.stack_prefix`
    of the project and stack; `account_id`, `region` and `partition` are looked up when
    not given.
    """

    prefix: str
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    sagemaker_role_arn: pulumi.Input[str]
    sagemaker_role_name: pulumi.Input[str] | None = None
    settings: TriggerSettings = field(default_factory=TriggerSettings)
    output_kms_key_arn: pulumi.Input[str] | None = None
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
    sagemaker_role_arn: str,
    log_group_name: str,
    queue_arn: str,
) -> Document:
    """The function's permissions: nothing beyond what starting this stack's jobs needs.

    CreateTransformJob is limited to job names with this stack's prefix (SageMaker ARNs
    carry names in lower case, as `naming` makes them) and to the configured instance
    type (condition key sagemaker:InstanceTypes). CreateTransformJob takes no role, so
    iam:PassRole is never exercised by today's handler; it is limited to the execution
    role and to SageMaker as the receiving service.
    """
    jobs = f"arn:{partition}:sagemaker:{region}:{account_id}:transform-job/{job_name_prefix}*"
    log_streams = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name}:*"
    return {
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
            {
                "Sid": "PassExecutionRoleToSageMakerOnly",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": sagemaker_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
            },
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


def notifications_topic_policy(*, topic_arn: str, rule_arns: list[str]) -> Document:
    """Only EventBridge, and only for this stack's job-state rules, may publish."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "JobStateRulesPublish",
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_PRINCIPAL},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}},
            }
        ],
    }


def job_state_pattern(job_name_prefix: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    """EventBridge pattern: this stack's transform jobs reaching one of `statuses`.

    `stack_prefix` ends with "--" and never contains "--" before it, so no other
    stack's prefix is a prefix of this one's names: a plain prefix match is exact.
    """
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [JOB_STATE_DETAIL_TYPE],
        "detail": {
            "TransformJobName": [{"prefix": job_name_prefix}],
            "TransformJobStatus": list(statuses),
        },
    }


# Input templates: one quoted string per line is EventBridge's form for multi-line text
# (EventBridge user guide, "Amazon EventBridge input transformation"). Two rules, because
# Completed and Stopped events carry no FailureReason and a template must not depend on a
# path that is absent from the event.
SUCCESS_PATHS = {
    "job": "$.detail.TransformJobName",
    "status": "$.detail.TransformJobStatus",
    "output": "$.detail.TransformOutput.S3OutputPath",
}
FAILURE_PATHS = {**SUCCESS_PATHS, "reason": "$.detail.FailureReason"}


def success_message_template() -> str:
    return "\n".join(
        [
            '"SageMaker transform job <job>: <status>"',
            '"Results (one .out file per input file): <output>/"',
        ]
    )


def failure_message_template() -> str:
    return "\n".join(
        [
            '"SageMaker transform job <job>: <status>"',
            '"Reason: <reason>"',
            '"Results of files that succeeded: <output>/"',
            '"Logs: CloudWatch log group /aws/sagemaker/TransformJobs, streams <job>/..."',
        ]
    )


class TriggerComponent(pulumi.ComponentResource):
    """Bucket notification -> Lambda -> transform job; job state -> SNS.

    Children: the function with its role, role policy, log group, S3 permission and
    asynchronous-invoke config (failures to an SQS queue), the bucket notification, the
    current-model SSM parameter, two EventBridge rules with SNS targets, the topic and its
    policy, an optional email subscription, and the execution role's S3 prefix grant.
    """

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    input_prefix: pulumi.Output[str]
    output_prefix: pulumi.Output[str]
    job_name_prefix: pulumi.Output[str]
    model_parameter_name: pulumi.Output[str]
    failed_events_queue_url: pulumi.Output[str]
    failed_events_queue_arn: pulumi.Output[str]
    notifications_topic_arn: pulumi.Output[str]
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
        log_group_name = f"/aws/lambda/{function_name}"
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
            name=log_group_name,
            retention_in_days=settings.log_retention_days,
            opts=child(),
        )
        queue = aws.sqs.Queue(
            f"{prefix}-trigger-failed",
            name=names["queue"],
            message_retention_seconds=14 * 24 * 3600,  # SQS's maximum: time to investigate
            sqs_managed_sse_enabled=True,
            opts=child(),
        )
        role = aws.iam.Role(
            f"{prefix}-trigger",
            description=f"{prefix}: Lambda that starts transform jobs for uploads",
            assume_role_policy=policy_json(assume_role_policy, service=LAMBDA_PRINCIPAL),
            opts=child(),
        )
        role_policy = aws.iam.RolePolicy(
            f"{prefix}-trigger-permissions",
            role=role.name,
            policy=policy_json(
                trigger_role_policy,
                {
                    "partition": partition,
                    "region": region,
                    "account_id": account_id,
                    "parameter_arn": parameter.arn,
                    "sagemaker_role_arn": args.sagemaker_role_arn,
                    "queue_arn": queue.arn,
                },
                job_name_prefix=job_prefix,
                instance_type=settings.instance_type,
                log_group_name=log_group_name,
            ),
            opts=child(),
        )
        if args.sagemaker_role_name is not None:
            aws.iam.RolePolicy(
                f"{prefix}-sagemaker-transform-prefixes",
                role=args.sagemaker_role_name,
                policy=policy_json(
                    s3_prefix_access_policy,
                    {"bucket_arn": args.bucket_arn},
                    read_prefixes=(settings.input_prefix,),
                    write_prefixes=(settings.output_prefix,),
                ),
                opts=child(),
            )

        # --- the function ----------------------------------------------------------
        environment: dict[str, pulumi.Input[str]] = dict(job_settings.to_env())
        if args.output_kms_key_arn is not None:
            environment["TRANSFORM_OUTPUT_KMS_KEY"] = args.output_kms_key_arn
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

        # --- job state notifications -----------------------------------------------
        topic = aws.sns.Topic(
            f"{prefix}-transform-jobs",
            name=names["topic"],
            display_name=f"{prefix} transform jobs",
            opts=child(),
        )
        rules = []
        for suffix, statuses, paths, template in (
            ("finished", FINISHED_STATUSES, SUCCESS_PATHS, success_message_template()),
            ("failed", FAILED_STATUSES, FAILURE_PATHS, failure_message_template()),
        ):
            rule = aws.cloudwatch.EventRule(
                f"{prefix}-transform-{suffix}",
                name=f"{prefix}-transform-{suffix}",
                description=f"{prefix}: transform jobs {'/'.join(statuses)}",
                event_pattern=json.dumps(job_state_pattern(job_prefix, statuses), sort_keys=True),
                opts=child(),
            )
            aws.cloudwatch.EventTarget(
                f"{prefix}-transform-{suffix}-to-sns",
                rule=rule.name,
                arn=topic.arn,
                input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                    input_paths=paths, input_template=template
                ),
                opts=child(),
            )
            rules.append(rule)
        aws.sns.TopicPolicy(
            f"{prefix}-transform-jobs-policy",
            arn=topic.arn,
            policy=policy_json(
                notifications_topic_policy,
                {"topic_arn": topic.arn, "rule_arns": [r.arn for r in rules]},
            ),
            opts=child(),
        )
        if settings.notification_email:
            aws.sns.TopicSubscription(
                f"{prefix}-transform-jobs-email",
                topic=topic.arn,
                protocol="email",
                endpoint=settings.notification_email,
                opts=child(),
            )

        self.function_name = function.name
        self.function_arn = function.arn
        self.input_prefix = pulumi.Output.from_input(settings.input_prefix)
        self.output_prefix = pulumi.Output.from_input(settings.output_prefix)
        self.job_name_prefix = pulumi.Output.from_input(job_prefix)
        self.model_parameter_name = parameter.name
        self.failed_events_queue_url = queue.url
        self.failed_events_queue_arn = queue.arn
        self.notifications_topic_arn = topic.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "function_name": self.function_name,
                "input_prefix": self.input_prefix,
                "output_prefix": self.output_prefix,
                "job_name_prefix": self.job_name_prefix,
                "model_parameter_name": self.model_parameter_name,
                "failed_events_queue_url": self.failed_events_queue_url,
                "notifications_topic_arn": self.notifications_topic_arn,
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
