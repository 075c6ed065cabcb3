"""Issue 14's controls on both stacks: encryption, key policy, logging, tracing, and each
new invariant catching the violation it is about."""

from __future__ import annotations

import copy
import json

from infra_harness import ACCOUNT, PROJECT, Run

from infra import security_checks as security
from infra.policies import plain
from infra.settings import resource_prefix

KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"


def inputs(record: dict) -> dict:
    return plain(record["inputs"])


def key_arn(run: Run) -> str:
    return run.one(KEY)["outputs"]["arn"]


def mutated(run: Run, typ: str, change, *, name: str | None = None) -> list[dict]:
    """The run's records with `change(props)` applied to the inputs and outputs of every
    `typ` record (only the one whose name ends with `-<name>`, when given)."""
    records = copy.deepcopy(run.resources)
    for record in records:
        if record["type"] == typ and (name is None or record["name"].endswith(f"-{name}")):
            change(record["inputs"])
            change(record["outputs"])
    return records


def without(run: Run, typ: str) -> list[dict]:
    return [r for r in run.resources if r["type"] != typ]


# --- encryption at rest ---------------------------------------------------------------------


def test_prod_key_protects_everything_that_holds_data_or_messages(prod: Run) -> None:
    key = key_arn(prod)
    assert inputs(prod.one("aws:sns/topic:Topic"))["kmsMasterKeyId"] == key
    assert inputs(prod.one("aws:sqs/queue:Queue"))["kmsMasterKeyId"] == key
    function = inputs(prod.one("aws:lambda/function:Function"))
    assert function["kmsKeyArn"] == key
    variables = function["environment"]["variables"]
    # ml.m5.xlarge has no local storage: the jobs' volume is encrypted with the key too.
    assert variables["TRANSFORM_OUTPUT_KMS_KEY"] == variables["TRANSFORM_VOLUME_KMS_KEY"] == key
    assert inputs(prod.one("aws:cloudwatch/logGroup:LogGroup"))["kmsKeyId"] == key
    repository = inputs(prod.one("aws:ecr/repository:Repository"))
    assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key}]
    assert inputs(prod.one("aws:sagemaker/notebookInstance:NotebookInstance"))["kmsKeyId"] == key
    assert inputs(prod.one("aws:secretsmanager/secret:Secret"))["kmsKeyId"] == key
    assert security.encrypted_with_stack_key(prod.resources, required=True) == []


def test_dev_uses_aws_managed_encryption_where_the_service_offers_it(dev: Run) -> None:
    assert not dev.of_type(KEY)
    queue = inputs(dev.one("aws:sqs/queue:Queue"))
    assert queue["sqsManagedSseEnabled"] is True
    repository = inputs(dev.one("aws:ecr/repository:Repository"))
    assert repository["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    # No alias/aws/sns on the topic: EventBridge could no longer publish to it (the
    # AWS-managed key's policy cannot admit events.amazonaws.com). README "Security" says so.
    assert "kmsMasterKeyId" not in inputs(dev.one("aws:sns/topic:Topic"))
    assert security.encrypted_with_stack_key(dev.resources) == []
    assert security.encrypted_with_stack_key(dev.resources, required=True) == [
        "the stack has no KMS key"
    ]


def test_key_policy_admits_the_account_logs_for_the_stack_group_and_eventbridge(
    prod: Run,
) -> None:
    statements = {s["Sid"]: s for s in json.loads(inputs(prod.one(KEY))["policy"])["Statement"]}
    assert statements["AccountAdministersKeyThroughIam"]["Principal"] == {
        "AWS": f"arn:aws:iam::{ACCOUNT}:root"
    }
    logs = statements["CloudWatchLogsForStackLogGroups"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    group = f"/aws/lambda/{resource_prefix(PROJECT, 'prod')}-trigger"
    assert logs["Condition"] == {
        "StringEquals": {
            "kms:EncryptionContext:aws:logs:arn": [
                f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{group}"
            ]
        }
    }
    assert inputs(prod.one("aws:cloudwatch/logGroup:LogGroup"))["name"] == group
    events = statements["EventBridgePublishesToEncryptedTopic"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert set(statements) == {
        "AccountAdministersKeyThroughIam",
        "CloudWatchLogsForStackLogGroups",
        "EventBridgePublishesToEncryptedTopic",
    }
    assert security.key_policy_principals(prod.resources) == []


# --- logging and tracing --------------------------------------------------------------------


def log_bucket(run: Run) -> dict:
    return run.named(BUCKET, "logs")


def test_prod_vpc_flow_logs_go_to_the_log_bucket(prod: Run, dev: Run) -> None:
    [flow_log] = prod.of_type("aws:ec2/flowLog:FlowLog")
    props = inputs(flow_log)
    assert props["trafficType"] == "ALL"
    assert props["logDestinationType"] == "s3"
    assert props["logDestination"] == f"{log_bucket(prod)['outputs']['arn']}/flow-logs/"
    assert props["vpcId"] == f"{prod.one('aws:ec2/vpc:Vpc')['name']}-id"
    policy = prod.named("aws:s3/bucketPolicy:BucketPolicy", "logs-policy")
    assert policy["urn"] in flow_log["dependencies"]  # delivery is admitted before it starts
    assert not dev.of_type("aws:ec2/flowLog:FlowLog")
    assert security.flow_logs_enabled(prod.resources) == []


def test_prod_access_logs_go_to_a_separate_locked_down_log_bucket(prod: Run, dev: Run) -> None:
    [logging] = prod.of_type("aws:s3/bucketLogging:BucketLogging")
    data, logs = prod.named(BUCKET, "data"), log_bucket(prod)
    assert inputs(logging) == {
        "bucket": data["outputs"]["bucket"],
        "targetBucket": logs["outputs"]["bucket"],
        "targetPrefix": "access-logs/",
    }
    assert logs["protect"] is True
    children = {
        r["type"].rsplit(":", 1)[1]: inputs(r)
        for r in prod.resources
        if r["type"].startswith("aws:s3/") and inputs(r).get("bucket") == logs["outputs"]["bucket"]
    }
    assert children["BucketPublicAccessBlock"]["restrictPublicBuckets"] is True
    assert children["BucketOwnershipControls"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    # SSE-S3: server access logging cannot write to an SSE-KMS target bucket.
    [rule] = children["BucketServerSideEncryptionConfiguration"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    [lifecycle] = children["BucketLifecycleConfiguration"]["rules"]
    assert lifecycle["expiration"] == {"days": 365}  # logRetentionDays in Pulumi.prod.yaml
    statements = {s["Sid"]: s for s in json.loads(children["BucketPolicy"]["policy"])["Statement"]}
    assert set(statements) == {
        "DenyInsecureTransport",
        "S3ServerAccessLogs",
        "VpcFlowLogsWrite",
        "VpcFlowLogsAclCheck",
    }
    access = statements["S3ServerAccessLogs"]
    assert access["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert access["Resource"] == f"{logs['outputs']['arn']}/access-logs/*"
    assert access["Condition"] == {
        "ArnLike": {"aws:SourceArn": data["outputs"]["arn"]},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    flow = statements["VpcFlowLogsWrite"]
    assert flow["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert flow["Resource"] == f"{logs['outputs']['arn']}/flow-logs/AWSLogs/{ACCOUNT}/*"
    assert not any(
        s["Effect"] == "Allow" and "AWS" in s.get("Principal", {}) for s in statements.values()
    )
    assert not dev.of_type("aws:s3/bucketLogging:BucketLogging")
    assert [b["name"] for b in dev.of_type(BUCKET)] == [dev.named(BUCKET, "data")["name"]]
    assert security.access_logging_enabled(prod.resources) == []


def test_prod_traces_the_trigger_dev_does_not(prod: Run, dev: Run) -> None:
    function = "aws:lambda/function:Function"
    assert inputs(prod.one(function))["tracingConfig"] == {"mode": "Active"}
    assert inputs(dev.one(function))["tracingConfig"] == {"mode": "PassThrough"}
    assert security.functions_traced(prod.resources) == []
    assert security.functions_traced(dev.resources) == [
        f"function {dev.one(function)['name']} is not traced"
    ]


# --- each new invariant catches its violation -----------------------------------------------


def test_a_managed_policy_on_any_role_but_the_notebooks_is_caught(dev: Run, public: Run) -> None:
    assert security.managed_policies_only_on_notebook(public.resources) == []  # the opt-in
    records = copy.deepcopy(public.resources)
    job_role = public.named("aws:iam/role:Role", "job")
    for record in records:
        if record["type"] == security.ATTACHMENT:
            record["inputs"]["role"] = record["outputs"]["role"] = job_role["outputs"]["name"]
    assert security.managed_policies_only_on_notebook(records) == [
        f"role {job_role['name']} has the AWS-managed policy "
        "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"
    ]


def test_a_job_role_statement_outside_the_stack_is_caught(prod: Run) -> None:
    def widen(sid: str, resource: str):
        def change(props: dict) -> None:
            document = json.loads(props["policy"])
            for statement in document["Statement"]:
                if statement["Sid"] == sid:
                    statement["Resource"] = resource
            props["policy"] = json.dumps(document)

        return change

    for sid, resource in (
        ("ProjectRepositoryPull", "*"),
        (
            "WriteOwnJobLogStreams",
            f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/TransformJobs:log-stream:*",
        ),
        ("TransformLogGroup", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/other:*"),
        ("UseStackKey", "arn:aws:kms:eu-west-1:210987654321:key/other"),
        ("ReadPrefixes", "arn:aws:s3:::sagemaker-other-bucket/*"),
    ):
        records = mutated(prod, security.ROLE_POLICY, widen(sid, resource), name="job-access")
        violations = security.job_role_scoped(records)
        assert len(violations) == 1 and resource in violations[0], (sid, violations)


def test_data_outside_the_stack_key_is_caught(prod: Run) -> None:
    for typ, change in (
        ("aws:sns/topic:Topic", lambda p: p.pop("kmsMasterKeyId", None)),
        ("aws:sqs/queue:Queue", lambda p: p.update(kmsMasterKeyId="alias/aws/sqs")),
        ("aws:cloudwatch/logGroup:LogGroup", lambda p: p.pop("kmsKeyId", None)),
        (
            "aws:ecr/repository:Repository",
            lambda p: p.update(encryptionConfigurations=[{"encryptionType": "AES256"}]),
        ),
        ("aws:sagemaker/notebookInstance:NotebookInstance", lambda p: p.pop("kmsKeyId", None)),
        ("aws:lambda/function:Function", lambda p: p.pop("kmsKeyArn", None)),
    ):
        violations = security.encrypted_with_stack_key(mutated(prod, typ, change))
        assert len(violations) == 1, (typ, violations)
    records = mutated(
        prod,
        "aws:lambda/function:Function",
        lambda p: p["environment"]["variables"].update(TRANSFORM_OUTPUT_KMS_KEY=""),
    )
    assert security.encrypted_with_stack_key(records) == [
        f"jobs' TRANSFORM_OUTPUT_KMS_KEY of {prod.one('aws:lambda/function:Function')['name']} "
        "does not use the stack's key"
    ]
    # The log bucket's SSE-S3 is the one exception; the data bucket's is not.
    records = mutated(
        prod,
        security.ENCRYPTION,
        lambda p: p.update(
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
        ),
    )
    assert len(security.encrypted_with_stack_key(records)) == 1  # the data bucket only
    dev_queue = mutated(prod, "aws:sqs/queue:Queue", lambda p: p.pop("sqsManagedSseEnabled", None))
    assert security.encrypted_with_stack_key([r for r in dev_queue if r["type"] != KEY]) != []


def test_a_key_policy_admitting_anyone_else_is_caught(prod: Run) -> None:
    def add(statement: dict):
        def change(props: dict) -> None:
            document = json.loads(props["policy"])
            document["Statement"].append(statement)
            props["policy"] = json.dumps(document)

        return change

    for statement, expected in (
        (
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
            "admits arn:aws:iam::210987654321:root",
        ),
        (
            {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
            "admits *",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
            "admits the service s3.amazonaws.com",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
            "for any log group",
        ),
    ):
        violations = security.key_policy_principals(mutated(prod, KEY, add(statement)))
        assert len(violations) == 1 and expected in violations[0], violations
    no_policy = mutated(prod, KEY, lambda p: p.pop("policy", None))
    assert security.key_policy_principals(no_policy) == [
        f"key {prod.one(KEY)['name']} has no explicit key policy"
    ]


def test_missing_flow_logs_and_access_logging_are_caught(prod: Run) -> None:
    assert security.flow_logs_enabled(without(prod, "aws:ec2/flowLog:FlowLog")) == [
        f"VPC {prod.one('aws:ec2/vpc:Vpc')['name']} has no flow logs"
    ]
    rejected = mutated(prod, "aws:ec2/flowLog:FlowLog", lambda p: p.update(trafficType="REJECT"))
    assert security.flow_logs_enabled(rejected) != []
    assert security.access_logging_enabled(without(prod, "aws:s3/bucketLogging:BucketLogging")) == [
        f"bucket {prod.named(BUCKET, 'data')['name']} has no server access logging"
    ]
