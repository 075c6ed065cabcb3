"""Policy as code for issue 14's controls: least privilege, encryption, logging.

Same contract as `infra.policies` (records in, list of violation sentences out; values not
known yet, as in a first preview, are skipped rather than guessed), so the mocks' tests and
the CrossGuard pack (`infra.crossguard`) run exactly these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from infra.grants import TRANSFORM_LOG_GROUP, UNSCOPABLE_ACTIONS
from infra.records import (
    Record,
    as_list,
    depends_on,
    document,
    known,
    of_type,
    plain,
    props,
)

BUCKET = "aws:s3/bucket:Bucket"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
NOTEBOOK = "aws:sagemaker/notebookInstance:NotebookInstance"
KEY = "aws:kms/key:Key"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
FUNCTION = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TOPIC = "aws:sns/topic:Topic"
QUEUE = "aws:sqs/queue:Queue"
REPOSITORY = "aws:ecr/repository:Repository"
SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
# The log bucket's component: its bucket is the one data-free, SSE-S3 exception.
LOG_BUCKET_COMPONENT = "infra:LogBucket"
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# Services the stack key's policy may name, and why (see infra.grants.key_policy).
KEY_SERVICES = {
    "events.amazonaws.com": "EventBridge publishing to the encrypted SNS topic",
    "logs.<region>.amazonaws.com": "CloudWatch Logs, for the stack's log groups only",
}
_LOGS_PRINCIPAL = re.compile(r"logs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
LOGS_CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"
# Environment variables through which the trigger hands the key to the jobs it starts.
JOB_KEY_VARIABLES = ("TRANSFORM_OUTPUT_KMS_KEY",)


def _type_of_urn(urn: str | None) -> str:
    parts = (urn or "").split("::")
    return parts[2] if len(parts) > 3 else ""


def _match(
    record: Record,
    value: Any,
    candidates: Sequence[Record],
    *keys: str,
    by_id: bool = False,
    prop: str | None = None,
) -> Record | None:
    """The candidate that `value` names (by one of its `keys` props); failing that, while
    the value is unknown (preview) or is a resource id (`by_id`: the engine keeps ids outside
    the props), the one candidate the record depends on."""
    if known(value):
        for candidate in candidates:
            if value in [props(candidate).get(k) for k in keys]:
                return candidate
        if not by_id:
            return None
    depended = [c for c in candidates if depends_on(record, c.get("urn"), prop)]
    return depended[0] if len(depended) == 1 else None


def _principals(statement: Mapping[str, Any], kind: str) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    return [str(p) for p in as_list((principal or {}).get(kind))]


def _trusts_sagemaker(role: Record) -> bool:
    trust = document(plain((role.get("inputs") or {}).get("assumeRolePolicy"))) or {}
    return any(
        SAGEMAKER_PRINCIPAL in _principals(s, "Service") for s in as_list(trust.get("Statement"))
    )


def notebook_roles(resources: Sequence[Record]) -> list[Record]:
    """The roles notebook instances run as."""
    roles = list(of_type(resources, ROLE))
    found = []
    for notebook in of_type(resources, NOTEBOOK):
        role = _match(notebook, props(notebook).get("roleArn"), roles, "arn", prop="roleArn")
        if role is not None:
            found.append(role)
    return found


def job_roles(resources: Sequence[Record]) -> list[Record]:
    """Roles trusted by SageMaker that no notebook uses: what models and jobs run as."""
    notebook_urns = {r["urn"] for r in notebook_roles(resources)}
    return [
        r
        for r in of_type(resources, ROLE)
        if _trusts_sagemaker(r) and r["urn"] not in notebook_urns
    ]


def _policies_of(resources: Sequence[Record], role: Record, typ: str) -> Iterator[Record]:
    roles = [role]
    for record in of_type(resources, typ):
        if _match(record, props(record).get("role"), roles, "name", "id", prop="role") is not None:
            yield record


def managed_policies_only_on_notebook(resources: Sequence[Record]) -> list[str]:
    """No role but a notebook's carries an AWS-managed policy (all of them reach beyond this
    stack: AmazonSageMakerFullAccess grants S3 on every "*sagemaker*" bucket)."""
    allowed = {r["urn"] for r in notebook_roles(resources)}
    violations = []
    for role in of_type(resources, ROLE):
        if role["urn"] in allowed:
            continue
        for attachment in _policies_of(resources, role, ATTACHMENT):
            arn = str(props(attachment).get("policyArn"))
            if ":iam::aws:policy/" in arn:
                violations.append(f"role {role['name']} has the AWS-managed policy {arn}")
        for arn in as_list(props(role).get("managedPolicyArns")):
            if ":iam::aws:policy/" in str(arn):
                violations.append(f"role {role['name']} has the AWS-managed policy {arn}")
    return violations


def _stack_arns(resources: Sequence[Record]) -> list[str]:
    return [a for a in (props(r).get("arn") for r in resources) if known(a) and str(a)]


def _in_stack(resource: str, arns: Sequence[str]) -> bool:
    return any(resource == a or resource.startswith((f"{a}/", f"{a}:")) for a in arns)


def _transform_log_resource(resource: str, account: str, actions: list[str]) -> bool:
    """The account's shared transform-job log group: group level only to create it and
    list streams; streams only under a non-empty name prefix (the stack's jobs)."""
    head, sep, rest = resource.partition(f":log-group:{TRANSFORM_LOG_GROUP}:")
    if not sep or not head.startswith("arn:") or head.split(":")[4:5] != [account]:
        return False
    if rest == "*":
        return set(actions) <= {"logs:CreateLogGroup", "logs:DescribeLogStreams"}
    stream = rest.removeprefix("log-stream:")
    return stream != rest and stream.rstrip("*") != ""


def job_role_scoped(resources: Sequence[Record]) -> list[str]:
    """Every statement of a job role names only this stack's resources (its bucket keys,
    repository, key, ...), its jobs' log streams, or "*" for actions AWS cannot scope."""
    arns = _stack_arns(resources)
    violations = []
    for role in job_roles(resources):
        role_arn = props(role).get("arn")
        account = str(role_arn).split(":")[4] if known(role_arn) else ""
        for policy in _policies_of(resources, role, ROLE_POLICY):
            for statement in as_list(
                (document(props(policy).get("policy")) or {}).get("Statement")
            ):
                if statement.get("Effect") != "Allow":
                    continue
                actions = [str(a) for a in as_list(statement.get("Action"))]
                for resource in as_list(statement.get("Resource")):
                    if not known(resource):
                        continue
                    if resource == "*" and set(actions) <= UNSCOPABLE_ACTIONS:
                        continue
                    if _in_stack(resource, arns):
                        continue
                    if _transform_log_resource(resource, account, actions):
                        continue
                    violations.append(
                        f"job role {role['name']} ({policy['name']}) grants {actions} on "
                        f"{resource}, outside this stack"
                    )
    return violations


def _is_log_bucket(record: Record) -> bool:
    return _type_of_urn(record.get("parent")).endswith(LOG_BUCKET_COMPONENT)


def _uses(value: Any, keys: set[str]) -> bool | None:
    """True/False when the value is known, None while it is not (preview)."""
    if not known(value):
        return None if value is not None else False
    return value in keys


def encrypted_with_stack_key(resources: Sequence[Record], *, required: bool = False) -> list[str]:
    """With a stack key, everything that holds data or messages names it: the data bucket,
    topic, queue, function (environment and the key it hands the jobs), log groups,
    repository, notebook volume and secret. Without one, SQS uses its own SSE. `required`:
    the stack must have a key (prod)."""
    keys = list(of_type(resources, KEY))
    if not keys:
        violations = ["the stack has no KMS key"] if required else []
        for queue in of_type(resources, QUEUE):
            if props(queue).get("sqsManagedSseEnabled") is not True:
                violations.append(f"queue {queue['name']} has no server-side encryption")
        return violations
    arns = {str(a) for a in (props(k).get("arn") for k in keys) if known(a)}
    if not arns:
        return []  # the key does not exist yet (preview): nothing can be compared
    checks: list[tuple[str, Record, Any]] = []
    buckets = list(of_type(resources, BUCKET))
    for config in of_type(resources, ENCRYPTION):
        bucket = _match(
            config, props(config).get("bucket"), buckets, "id", "bucket", by_id=True, prop="bucket"
        )
        if bucket is not None and _is_log_bucket(bucket):
            continue
        for rule in as_list(props(config).get("rules")):
            default = rule.get("applyServerSideEncryptionByDefault") or {}
            checks.append(("bucket encryption", config, default.get("kmsMasterKeyId")))
    for typ, kind, prop in (
        (TOPIC, "topic", "kmsMasterKeyId"),
        (QUEUE, "queue", "kmsMasterKeyId"),
        (FUNCTION, "function environment", "kmsKeyArn"),
        (LOG_GROUP, "log group", "kmsKeyId"),
        (NOTEBOOK, "notebook volume", "kmsKeyId"),
        (SECRET, "secret", "kmsKeyId"),
    ):
        checks += [(kind, r, props(r).get(prop)) for r in of_type(resources, typ)]
    for function in of_type(resources, FUNCTION):
        variables = ((props(function).get("environment") or {}).get("variables")) or {}
        for name in JOB_KEY_VARIABLES:
            checks.append((f"jobs' {name}", function, variables.get(name)))
    for repository in of_type(resources, REPOSITORY):
        for config in as_list(props(repository).get("encryptionConfigurations")) or [{}]:
            checks.append(("repository", repository, config.get("kmsKey")))
    return [
        f"{kind} of {record['name']} does not use the stack's key"
        for kind, record, value in checks
        if _uses(value, arns) is False
    ]


def key_policy_principals(resources: Sequence[Record]) -> list[str]:
    """A stack key's policy names no principal outside the key's account and the listed
    services (`KEY_SERVICES`); CloudWatch Logs only with the log-group encryption context."""
    violations = []
    for key in of_type(resources, KEY):
        policy = document(props(key).get("policy"))
        arn = props(key).get("arn")
        if policy is None:
            if not known(props(key).get("policy")) and "policy" in (key.get("inputs") or {}):
                continue  # not known yet (preview)
            violations.append(f"key {key['name']} has no explicit key policy")
            continue
        account = str(arn).split(":")[4] if known(arn) else None
        for statement in as_list(policy.get("Statement")):
            if statement.get("Effect") != "Allow":
                continue
            if statement.get("Principal") == "*":
                violations.append(f"key {key['name']} admits *")
                continue
            for principal in _principals(statement, "AWS"):
                ok = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):(root|role/.+)", principal)
                if principal == "*" or not ok or (account and ok.group(1) != account):
                    violations.append(f"key {key['name']} admits {principal}")
            for service in _principals(statement, "Service"):
                if _LOGS_PRINCIPAL.fullmatch(service):
                    conditions = statement.get("Condition") or {}
                    if not any(LOGS_CONTEXT_KEY in c for c in conditions.values()):
                        violations.append(f"key {key['name']} admits {service} for any log group")
                elif service not in KEY_SERVICES:
                    violations.append(f"key {key['name']} admits the service {service}")
    return violations


def flow_logs_enabled(resources: Sequence[Record]) -> list[str]:
    """Every VPC records all its traffic in flow logs."""
    logged = set()
    vpcs = list(of_type(resources, VPC))
    for flow_log in of_type(resources, FLOW_LOG):
        if props(flow_log).get("trafficType") != "ALL":
            continue
        vpc = _match(flow_log, props(flow_log).get("vpcId"), vpcs, "id", by_id=True, prop="vpcId")
        if vpc is not None:
            logged.add(vpc["urn"])
    return [f"VPC {v['name']} has no flow logs" for v in vpcs if v["urn"] not in logged]


def access_logging_enabled(resources: Sequence[Record]) -> list[str]:
    """Every bucket but the log bucket has S3 server access logging, into the log bucket."""
    buckets = list(of_type(resources, BUCKET))
    data = [b for b in buckets if not _is_log_bucket(b)]
    logs = [b for b in buckets if _is_log_bucket(b)]
    logged = set()
    for logging in of_type(resources, BUCKET_LOGGING):
        source = _match(
            logging, props(logging).get("bucket"), data, "id", "bucket", by_id=True, prop="bucket"
        )
        target = _match(
            logging,
            props(logging).get("targetBucket"),
            logs,
            "id",
            "bucket",
            by_id=True,
            prop="targetBucket",
        )
        if source is not None and target is not None:
            logged.add(source["urn"])
    return [
        f"bucket {b['name']} has no server access logging" for b in data if b["urn"] not in logged
    ]


def functions_traced(resources: Sequence[Record]) -> list[str]:
    """Every Lambda function has X-Ray active tracing."""
    return [
        f"function {f['name']} is not traced"
        for f in of_type(resources, FUNCTION)
        if (props(f).get("tracingConfig") or {}).get("mode") != "Active"
    ]
