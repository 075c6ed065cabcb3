"""The trigger and notifications components under Pulumi's mocks, on their own with plain
inputs, wired as infra/program.py wires them.

Two program runs (plain, and with a KMS key and tracing) plus one preview run per module:
importing pulumi_aws is slow. Checks the wiring that makes uploads start jobs and nothing
else: notification filters, the S3 permission's source, the function's role (linted with
parliament), the PassRole condition, encryption and tracing, the job-state rules' patterns
(with a small EventBridge matcher) and the SNS topic policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra import policies
from lambda_handler import naming
from lambda_handler.config import Settings
from lambda_handler.model_parameter import UNSET

PROJECT = "sagemaker-batch-transform"
STACK = "dev"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
PREFIX = f"{PROJECT}-{STACK}"
BUCKET = "sagemaker-batch-transform-dev-data-1a2b3c4"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
ROLE_NAME = "sagemaker-batch-transform-dev-job-5e6f7a8"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EMAIL = "ml-team@example.com"
JOB_PREFIX = naming.stack_prefix(PROJECT, STACK)

FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
QUEUE = "aws:sqs/queue:Queue"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
PERMISSION = "aws:lambda/permission:Permission"
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
PARAMETER = "aws:ssm/parameter:Parameter"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
COMPONENT = "sagemaker-batch-transform:infra:Trigger"
NOTIFICATIONS = "sagemaker-batch-transform:infra:Notifications"


class TriggerMocks(pulumi.runtime.Mocks):
    """ARNs, URLs and names shaped like AWS's; nothing known in preview."""

    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "X"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        return {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if self.preview:
            return "", {}
        state = dict(args.inputs)
        name = state.get("name") or f"{args.name}-0a1b2c3"
        base = f"{REGION}:{ACCOUNT}"
        arns = {
            ROLE: f"arn:aws:iam::{ACCOUNT}:role/{name}",
            FUNCTION: f"arn:aws:lambda:{base}:function:{name}",
            QUEUE: f"arn:aws:sqs:{base}:{name}",
            TOPIC: f"arn:aws:sns:{base}:{name}",
            RULE: f"arn:aws:events:{base}:rule/{name}",
            LOG_GROUP: f"arn:aws:logs:{base}:log-group:{name}",
            PARAMETER: f"arn:aws:ssm:{base}:parameter/{str(name).lstrip('/')}",
        }
        if args.typ in arns:
            state.update(name=name, arn=arns[args.typ])
        if args.typ == QUEUE:
            state["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return f"{args.name}-id", state


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps each registration's parent, dependencies and ignore_changes too."""

    def __init__(self, mocks: TriggerMocks) -> None:
        super().__init__(mocks)
        self.records: list[dict[str, Any]] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(
                {
                    "type": request.type,
                    "name": request.name,
                    "urn": response.urn,
                    "parent": request.parent,
                    "dependencies": list(request.dependencies),
                    "ignore_changes": list(request.ignoreChanges),
                    "inputs": rpc.deserialize_properties(request.object),
                    "outputs": self.resources[response.urn].state,
                }
            )
        return response


@dataclass
class Run:
    records: list[dict[str, Any]]
    component: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == typ]

    def one(self, typ: str) -> dict[str, Any]:
        (found,) = self.of_type(typ)
        return found

    def by_urn(self, urn: str) -> dict[str, Any]:
        (found,) = [r for r in self.records if r["urn"] == urn]
        return found


def _run(preview: bool, *, encrypted: bool = False) -> Run:
    """`encrypted`: with the stack's key and X-Ray tracing (prod), on an instance type with
    local storage (no volume key possible)."""
    from infra.notifications import Notifications, NotificationsArgs
    from infra.trigger import TriggerArgs, TriggerComponent, TriggerSettings

    mocks = TriggerMocks(preview)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config({})
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi_settings.ROOT.set(None)
    run = Run(monitor.records)

    def program() -> None:
        run.component = TriggerComponent(
            "trigger",
            TriggerArgs(
                prefix=PREFIX,
                bucket_name=BUCKET,
                bucket_arn=BUCKET_ARN,
                job_role_arn=ROLE_ARN,
                settings=TriggerSettings(
                    notification_email=EMAIL,
                    reserved_concurrency=5,
                    max_concurrent_transforms=4,
                    timeout_seconds=90,
                    memory_mb=512,
                    log_retention_days=14,
                    instance_type="ml.m5d.large" if encrypted else "ml.m5.large",
                ),
                kms_key_arn=KEY_ARN if encrypted else None,
                tracing=encrypted,
            ),
        )
        notifications = Notifications(
            "notifications",
            NotificationsArgs(
                prefix=PREFIX,
                job_name_prefix=JOB_PREFIX,
                email=EMAIL,
                kms_key_arn=KEY_ARN if encrypted else None,
            ),
        )
        component = run.component
        pulumi.Output.all(
            component.function_name,
            component.failed_events_queue_url,
            notifications.topic_arn,
            component.model_parameter_name,
        ).apply(
            lambda values: run.outputs.update(
                zip(("fn", "queue", "topic", "param"), values, strict=True)
            )
        )

    _sync_await(run_in_stack(program))
    return run


@cache
def deployed(encrypted: bool = False) -> Run:
    return _run(preview=False, encrypted=encrypted)


@pytest.fixture(scope="module")
def up() -> Run:
    return deployed()


@pytest.fixture(scope="module")
def encrypted() -> Run:
    return deployed(encrypted=True)


def policy(record: dict[str, Any], key: str = "policy") -> dict[str, Any]:
    return json.loads(record["inputs"][key])


def rule(run: Run, suffix: str) -> dict[str, Any]:
    (found,) = [r for r in run.of_type(RULE) if r["name"].endswith(f"-transform-{suffix}")]
    return found


def parliament_findings(document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Parliament's findings above LOW severity (the bar every policy of the project meets)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    found = parliament.analyze_policy_string(json.dumps(document))
    out = []
    for finding in found.findings:
        parliament.enhance_finding(finding)
        if finding.severity not in ("LOW", "INFO", "MUTE"):
            out.append((finding.severity, finding.issue, finding.detail))
    return out


# --- a small EventBridge pattern matcher (the subset of the pattern language used) -----


def matches(pattern: Any, event: Any) -> bool:
    """True when `event` satisfies `pattern`: nested objects; leaf lists of exact values
    or {"prefix": ...}; a field absent from the event never matches."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and matches(sub, event[key]) for key, sub in pattern.items()
        )
    assert isinstance(pattern, list), pattern
    values = event if isinstance(event, list) else [event]
    for value in values:
        for option in pattern:
            if isinstance(option, dict):
                (operator, operand), *rest = option.items()
                assert not rest and operator == "prefix", option
                if isinstance(value, str) and value.startswith(operand):
                    return True
            elif option == value:
                return True
    return False


def test_matcher_itself() -> None:
    assert matches({"a": ["x"]}, {"a": "x", "b": 1})
    assert not matches({"a": ["x"]}, {"b": "x"})
    assert matches({"a": {"b": [{"prefix": "ab"}]}}, {"a": {"b": "abc"}})
    assert not matches({"a": {"b": [{"prefix": "ab"}]}}, {"a": {"b": "xab"}})
    assert matches({"a": ["x", "y"]}, {"a": "y"})


def job_event(job_name: str, status: str, **detail: Any) -> dict[str, Any]:
    """A "SageMaker Transform Job State Change" event (its detail mirrors DescribeTransformJob)."""
    return {
        "version": "0",
        "id": "0bd1e4d6-8bd2-4d32-a2b3-8e1c0b7f0f0a",
        "detail-type": "SageMaker Transform Job State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2026-01-01T00:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{job_name}"],
        "detail": {
            "TransformJobName": job_name,
            "TransformJobStatus": status,
            "ModelName": "sbt-dev-model-1",
            "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/transform/output"},
            **detail,
        },
    }


# --- the resources -----------------------------------------------------------------------


def test_every_resource_is_declared_once_under_its_component(up: Run) -> None:
    trigger = {
        FUNCTION: 1, ROLE: 1, ROLE_POLICY: 1, LOG_GROUP: 1, QUEUE: 1, INVOKE_CONFIG: 1,
        PERMISSION: 1, NOTIFICATION: 1, PARAMETER: 1,
    }  # fmt: skip
    notifications = {TOPIC: 1, TOPIC_POLICY: 1, SUBSCRIPTION: 1, RULE: 2, TARGET: 2}
    assert {t: len(up.of_type(t)) for t in {**trigger, **notifications}} == {
        **trigger,
        **notifications,
    }
    (component,) = up.of_type(COMPONENT)
    (notifier,) = up.of_type(NOTIFICATIONS)
    for typ in trigger:
        assert all(r["parent"] == component["urn"] for r in up.of_type(typ)), typ
    for typ in notifications:
        assert all(r["parent"] == notifier["urn"] for r in up.of_type(typ)), typ
    components = (component, notifier)
    assert all(r["name"].startswith(PREFIX) for r in up.records if r not in components)


def test_function_runtime_code_and_limits(up: Run) -> None:
    fn = up.one(FUNCTION)["inputs"]
    assert fn["runtime"] == "python3.14"
    assert fn["handler"] == "lambda_handler.handler.handler"
    assert fn["name"] == f"{PREFIX}-trigger"
    assert (fn["timeout"], fn["memorySize"], fn["reservedConcurrentExecutions"]) == (90, 512, 5)
    assert fn["role"] == up.one(ROLE)["outputs"]["arn"]
    archive = fn["code"]
    assert isinstance(archive, pulumi.AssetArchive)
    assert "lambda_handler/handler.py" in archive.assets
    assert "lambda_handler/naming.py" in archive.assets
    assert not any("__pycache__" in path for path in archive.assets)


def test_function_environment_is_what_the_handler_reads(up: Run) -> None:
    env = up.one(FUNCTION)["inputs"]["environment"]["variables"]
    settings = Settings.from_env(env)  # validates as the handler would
    assert settings.job_name_prefix == JOB_PREFIX
    assert settings.input_prefix == "transform/input/"
    assert settings.output_prefix == "transform/output/"
    assert settings.model_parameter == up.one(PARAMETER)["inputs"]["name"]
    assert settings.max_concurrent_transforms == 4


def test_log_group_is_the_functions_own_with_retention(up: Run) -> None:
    group = up.one(LOG_GROUP)
    assert group["inputs"]["name"] == f"/aws/lambda/{PREFIX}-trigger"
    assert group["inputs"]["retentionInDays"] == 14
    assert group["urn"] in up.one(FUNCTION)["dependencies"]


def test_current_model_parameter_starts_unset_and_is_left_to_the_training_script(up: Run) -> None:
    parameter = up.one(PARAMETER)
    assert parameter["inputs"]["name"] == f"/{PROJECT}/{STACK}/current-model"
    assert parameter["inputs"]["type"] == "String"
    assert pulumi_plain(parameter["inputs"]["value"]) == UNSET
    assert parameter["ignore_changes"] == ["value"]
    assert up.outputs["param"] == f"/{PROJECT}/{STACK}/current-model"


def pulumi_plain(value: Any) -> Any:
    secret_sig = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
    if isinstance(value, dict) and secret_sig.items() <= value.items():
        return value["value"]
    return value


def test_notification_filters_only_the_input_prefix_and_suffix(up: Run) -> None:
    notification = up.one(NOTIFICATION)
    assert notification["inputs"]["bucket"] == BUCKET
    (target,) = notification["inputs"]["lambdaFunctions"]
    assert target["lambdaFunctionArn"] == up.one(FUNCTION)["outputs"]["arn"]
    assert target["events"] == ["s3:ObjectCreated:*"]
    assert target["filterPrefix"] == "transform/input/"
    assert target["filterSuffix"] == ".csv"
    # No loop: nothing SageMaker writes under the output prefix passes the filter.
    for written in ("transform/output/a.csv.out", "transform/output/sub/a.csv", "transform/a.csv"):
        assert not (
            written.startswith(target["filterPrefix"]) and written.endswith(target["filterSuffix"])
        )
    # S3 validates the destination when the notification is saved: the permission first.
    assert up.one(PERMISSION)["urn"] in notification["dependencies"]


def test_s3_may_invoke_the_function_only_for_this_bucket_and_account(up: Run) -> None:
    permission = up.one(PERMISSION)["inputs"]
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["principal"] == "s3.amazonaws.com"
    assert permission["sourceArn"] == BUCKET_ARN
    assert permission["sourceAccount"] == ACCOUNT
    assert permission["function"] == f"{PREFIX}-trigger"


def test_failed_events_go_to_an_encrypted_queue(up: Run) -> None:
    queue = up.one(QUEUE)
    assert queue["inputs"]["sqsManagedSseEnabled"] is True
    assert queue["inputs"]["messageRetentionSeconds"] == 14 * 24 * 3600
    config = up.one(INVOKE_CONFIG)
    assert (
        config["inputs"]["destinationConfig"]["onFailure"]["destination"] == queue["outputs"]["arn"]
    )
    assert config["inputs"]["maximumRetryAttempts"] == 2
    assert config["inputs"]["maximumEventAgeInSeconds"] == 3600
    trigger_policy = _trigger_policy(up)
    assert trigger_policy["urn"] in config["dependencies"]
    assert up.outputs["queue"] == queue["outputs"]["url"]


# --- IAM ---------------------------------------------------------------------------------


def _trigger_policy(run: Run) -> dict[str, Any]:
    (found,) = [r for r in run.of_type(ROLE_POLICY) if r["name"] == f"{PREFIX}-trigger-permissions"]
    return found


def _statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in document["Statement"]}


def test_function_role_is_assumable_by_lambda_only(up: Run) -> None:
    trust = policy(up.one(ROLE), "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


def test_function_role_policy_is_least_privilege(up: Run) -> None:
    record = _trigger_policy(up)
    assert record["inputs"]["role"] == up.one(ROLE)["outputs"]["name"]
    statements = _statements(policy(record))
    jobs = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{JOB_PREFIX}*"
    assert statements["StartStackTransformJobs"]["Action"] == "sagemaker:CreateTransformJob"
    assert statements["StartStackTransformJobs"]["Resource"] == jobs
    assert statements["StartStackTransformJobs"]["Condition"] == {
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.m5.large"]}
    }
    assert statements["DescribeStackTransformJobs"]["Resource"] == jobs
    assert statements["ReadCurrentModel"] == {
        "Sid": "ReadCurrentModel",
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": up.one(PARAMETER)["outputs"]["arn"],
    }
    assert statements["WriteOwnLogs"]["Resource"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{PREFIX}-trigger:*"
    )
    assert statements["SendFailedEvents"]["Resource"] == up.one(QUEUE)["outputs"]["arn"]
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert "*" not in str(statement["Action"])
        assert statement["Resource"] != "*"


def test_pass_role_only_for_the_job_role_and_only_to_sagemaker(up: Run) -> None:
    statements = [
        s for s in policy(_trigger_policy(up))["Statement"] if "iam:PassRole" in str(s["Action"])
    ]
    assert statements == [
        {
            "Sid": "PassJobRoleToSageMakerOnly",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": ROLE_ARN,
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        }
    ]


def test_job_name_prefix_in_iam_matches_the_names_the_handler_makes(up: Run) -> None:
    resource = _statements(policy(_trigger_policy(up)))["StartStackTransformJobs"]["Resource"]
    name = naming.job_name(JOB_PREFIX, BUCKET, "transform/input/Ünïcode Fïle.csv", "v:1")
    assert f"transform-job/{name}".startswith(resource.split(":", 5)[5].rstrip("*"))
    other = naming.job_name(naming.stack_prefix(PROJECT, "dev2"), BUCKET, "transform/input/a.csv")
    assert not f"transform-job/{other}".startswith(resource.split(":", 5)[5].rstrip("*"))


@pytest.mark.parametrize("which", ["trigger", "trigger-encrypted-traced", "topic"])
def test_policies_pass_parliament(up: Run, encrypted: Run, which: str) -> None:
    """(The trust policy has no Resource by design; parliament reads it as a malformed
    identity policy, so its shape is checked above instead.)"""
    documents = {
        "trigger": policy(_trigger_policy(up)),
        "trigger-encrypted-traced": policy(_trigger_policy(encrypted)),
        "topic": policy(up.one(TOPIC_POLICY)),
    }
    assert parliament_findings(documents[which]) == []


def test_stack_policy_invariants_hold_for_the_trigger(up: Run) -> None:
    """The program's own policy-as-code checks (infra/policies.py) accept these resources
    (the whole stack, trigger included, is checked in test_infra_policies.py)."""
    # The stack's bucket, declared by the storage component in the real program.
    bucket = {
        "type": "aws:s3/bucket:Bucket",
        "name": f"{PREFIX}-data",
        "inputs": {},
        "outputs": {"bucket": BUCKET, "arn": BUCKET_ARN},
    }
    records = [{**r, "protect": False, "provider": ""} for r in up.records]
    assert policies.s3_access_scoped([bucket, *records]) == []
    # The function itself never touches S3: the jobs read and write as the job role.
    statements = policy(_trigger_policy(up))["Statement"]
    assert not [s for s in statements if "s3:" in json.dumps(s["Action"])]


# --- encryption and tracing (prod) --------------------------------------------------------


def test_without_a_key_the_queue_uses_sqs_sse_and_nothing_names_a_key(up: Run) -> None:
    queue = up.one(QUEUE)["inputs"]
    assert queue["sqsManagedSseEnabled"] is True and "kmsMasterKeyId" not in queue
    fn = up.one(FUNCTION)["inputs"]
    assert "kmsKeyArn" not in fn and fn["tracingConfig"] == {"mode": "PassThrough"}
    assert "kmsKeyId" not in up.one(LOG_GROUP)["inputs"]
    assert "kmsMasterKeyId" not in up.one(TOPIC)["inputs"]
    env = fn["environment"]["variables"]
    assert env["TRANSFORM_OUTPUT_KMS_KEY"] == env["TRANSFORM_VOLUME_KMS_KEY"] == ""  # none
    sids = {s["Sid"] for s in policy(_trigger_policy(up))["Statement"]}
    assert not sids & {"UseStackKeyForEnvironmentAndQueue", "SendTraces"}


def test_with_the_key_everything_holding_data_or_messages_names_it(encrypted: Run) -> None:
    fn = encrypted.one(FUNCTION)["inputs"]
    assert fn["kmsKeyArn"] == KEY_ARN
    assert encrypted.one(LOG_GROUP)["inputs"]["kmsKeyId"] == KEY_ARN
    queue = encrypted.one(QUEUE)["inputs"]
    assert queue["kmsMasterKeyId"] == KEY_ARN and "sqsManagedSseEnabled" not in queue
    assert encrypted.one(TOPIC)["inputs"]["kmsMasterKeyId"] == KEY_ARN
    # The jobs the function starts encrypt their output with it; ml.m5d has local NVMe
    # storage, for which SageMaker refuses a VolumeKmsKeyId, so none is set.
    settings = Settings.from_env(fn["environment"]["variables"])
    assert settings.output_kms_key == KEY_ARN and settings.volume_kms_key == ""
    statements = {s["Sid"]: s for s in policy(_trigger_policy(encrypted))["Statement"]}
    assert statements["UseStackKeyForEnvironmentAndQueue"] == {
        "Sid": "UseStackKeyForEnvironmentAndQueue",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": KEY_ARN,
    }


def test_tracing_is_active_with_exactly_xrays_two_actions(encrypted: Run) -> None:
    assert encrypted.one(FUNCTION)["inputs"]["tracingConfig"] == {"mode": "Active"}
    statements = {s["Sid"]: s for s in policy(_trigger_policy(encrypted))["Statement"]}
    assert statements["SendTraces"]["Action"] == [
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ]
    assert statements["SendTraces"]["Resource"] == "*"  # X-Ray has no resource-level permissions


@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.m5.large", False),
        ("ml.c5.xlarge", False),
        ("ml.m5d.large", True),
        ("ml.c6id.2xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.g5.xlarge", True),
        ("ml.inf1.xlarge", False),
    ],
)
def test_volume_key_only_where_sagemaker_accepts_one(
    instance_type: str, local_storage: bool
) -> None:
    from lambda_handler.instance_storage import has_instance_storage

    assert has_instance_storage(instance_type) is local_storage


def test_volume_key_reaches_the_job_request_on_ebs_instances() -> None:
    """The handler puts TRANSFORM_VOLUME_KMS_KEY into TransformResources.VolumeKmsKeyId."""
    from lambda_handler.events import ObjectRef
    from lambda_handler.jobs import build_request

    settings = Settings(
        job_name_prefix=JOB_PREFIX,
        input_prefix="transform/input/",
        output_prefix="transform/output/",
        output_kms_key=KEY_ARN,
        volume_kms_key=KEY_ARN,
    )
    ref = ObjectRef(BUCKET, "transform/input/a.csv", token="v1", source="s3", where="test")
    request = build_request(ref, settings, "model", "job")
    assert request["TransformResources"]["VolumeKmsKeyId"] == KEY_ARN
    assert request["TransformOutput"]["KmsKeyId"] == KEY_ARN
    plain = build_request(ref, settings._replace(volume_kms_key=""), "model", "job")
    assert "VolumeKmsKeyId" not in plain["TransformResources"]


# --- notifications -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "statuses"), [("finished", {"Completed", "Stopped"}), ("failed", {"Failed"})]
)
def test_job_state_rules_match_this_stacks_jobs_only(up: Run, suffix: str, statuses: set) -> None:
    pattern = json.loads(rule(up, suffix)["inputs"]["eventPattern"])
    ours = naming.job_name(JOB_PREFIX, BUCKET, "transform/input/day 1.csv", "v:abc")
    for status in ("InProgress", "Stopping", "Completed", "Failed", "Stopped"):
        assert matches(pattern, job_event(ours, status)) == (status in statuses), status
    status = sorted(statuses)[0]
    others = [
        naming.job_name(naming.stack_prefix(PROJECT, "prod"), BUCKET, "transform/input/a.csv"),
        naming.job_name(naming.stack_prefix(PROJECT, "dev2"), BUCKET, "transform/input/a.csv"),
        naming.job_name(naming.stack_prefix(PROJECT, "dev-2"), BUCKET, "transform/input/a.csv"),
        naming.job_name(naming.stack_prefix("other-project", STACK), BUCKET, "a.csv"),
        "sagemaker-batch-transform-dev-manual-job",  # a job started by hand
        JOB_PREFIX.rstrip("-"),  # the prefix without its terminator
    ]
    for name in others:
        assert not matches(pattern, job_event(name, status)), name
    assert not matches(pattern, {**job_event(ours, status), "source": "aws.s3"})
    assert not matches(
        pattern, {**job_event(ours, status), "detail-type": "SageMaker Training Job State Change"}
    )


@pytest.mark.parametrize("suffix", ["finished", "failed"])
def test_targets_publish_a_short_message_to_the_topic(up: Run, suffix: str) -> None:
    the_rule = rule(up, suffix)
    (target,) = [
        t for t in up.of_type(TARGET) if t["inputs"]["rule"] == the_rule["outputs"]["name"]
    ]
    assert target["inputs"]["arn"] == up.one(TOPIC)["outputs"]["arn"]
    transformer = target["inputs"]["inputTransformer"]
    paths, template = transformer["inputPaths"], transformer["inputTemplate"]
    assert paths["job"] == "$.detail.TransformJobName"
    assert paths["status"] == "$.detail.TransformJobStatus"
    assert paths["output"] == "$.detail.TransformOutput.S3OutputPath"
    assert ("reason" in paths) == (suffix == "failed")
    if suffix == "failed":
        assert paths["reason"] == "$.detail.FailureReason"
    # Every placeholder has a path; every line is one JSON string (multi-line text form).
    placeholders = {p.split(">")[0] for p in template.split("<")[1:]}
    assert placeholders == set(paths)
    lines = template.splitlines()
    assert all(isinstance(json.loads(line), str) for line in lines)
    # Rendered with a real event, the message names job, status, reason and output.
    event = job_event("sbt-dev-1a2b--x-0123", "Failed", FailureReason="ClientError: bad row 7")
    values = {
        "job": event["detail"]["TransformJobName"],
        "status": event["detail"]["TransformJobStatus"],
        "output": event["detail"]["TransformOutput"]["S3OutputPath"],
        "reason": event["detail"]["FailureReason"],
    }
    text = "\n".join(json.loads(line) for line in lines)
    for key, value in values.items():
        if key in paths:
            text = text.replace(f"<{key}>", value)
    assert "sbt-dev-1a2b--x-0123" in text and f"s3://{BUCKET}/transform/output/" in text
    assert ("ClientError: bad row 7" in text) == (suffix == "failed")
    assert len(text) < 400


def test_topic_policy_lets_only_these_rules_publish(up: Run) -> None:
    record = up.one(TOPIC_POLICY)
    topic_arn = up.one(TOPIC)["outputs"]["arn"]
    assert record["inputs"]["arn"] == topic_arn
    (statement,) = policy(record)["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Resource"] == topic_arn
    rule_arns = sorted(r["outputs"]["arn"] for r in up.of_type(RULE))
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arns}}
    assert up.outputs["topic"] == topic_arn


def test_optional_email_subscription(up: Run) -> None:
    subscription = up.one(SUBSCRIPTION)["inputs"]
    assert subscription == {
        "topic": up.one(TOPIC)["outputs"]["arn"],
        "protocol": "email",
        "endpoint": EMAIL,
    } | {k: v for k, v in subscription.items() if k not in ("topic", "protocol", "endpoint")}


def test_preview_with_unknown_values_declares_the_same_resources(up: Run) -> None:
    preview = _run(preview=True)
    assert sorted((r["type"], r["name"]) for r in preview.records) == sorted(
        (r["type"], r["name"]) for r in up.records
    )
    deployed.cache_clear()  # the next module gets a clean runtime
