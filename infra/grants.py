"""Who may do what: the notebook role, the job role and the KMS key policy, as plain dicts.

Built from resolved ARNs like every document in `infra.documents` (pure functions, so the
linter and the invariants in `infra.policies` check exactly what lands in AWS).

The split (issue 14): transform jobs run as the **job role**, which reads the model and the
input prefixes, writes the output prefixes, pulls this stack's image, writes its own log
streams and uses the stack's key, and nothing else. The **notebook role** keeps what the
documented interactive workflow needs (run `scripts/train_and_transform.py --stack`, read job
logs, stop itself when idle), still scoped to this stack; AWS's AmazonSageMakerFullAccess is
an opt-in on top (`notebookSageMakerFullAccess`).
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.documents import (
    ECR_PULL_ACTIONS,
    S3_BUCKET_ACTIONS,
    S3_OBJECT_ACTIONS,
    Document,
    kms_use_statements,
    s3_prefix_access_policy,
)

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
EVENTS_PRINCIPAL = "events.amazonaws.com"
# Batch Transform writes to this account-wide group, one stream per instance named
# `<job name>/<instance id>-<epoch>` (SageMaker developer guide, "Log groups and streams").
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
NOTEBOOK_LOG_GROUP = "/aws/sagemaker/NotebookInstances"
# Actions with no resource-level permissions (service authorization reference): the only
# valid resource is "*", so each is granted alone, with a condition where one exists.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
)
ECR_LOGIN: Document = {
    "Sid": "EcrLogin",
    "Effect": "Allow",
    "Action": "ecr:GetAuthorizationToken",
    "Resource": "*",
}


def pass_job_role(job_role_arn: str) -> Document:
    """iam:PassRole on the job role only, and only to SageMaker (condition iam:PassedToService)."""
    return {
        "Sid": "PassJobRoleToSageMakerOnly",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": job_role_arn,
        "Condition": {"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
    }


def _logs_arn(partition: str, region: str, account_id: str, group: str) -> str:
    return f"arn:{partition}:logs:{region}:{account_id}:log-group:{group}"


def _sagemaker_arn(partition: str, region: str, account_id: str, kind: str, name: str) -> str:
    return f"arn:{partition}:sagemaker:{region}:{account_id}:{kind}/{name}"


def job_role_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    bucket_arn: str,
    repository_arn: str,
    job_name_prefix: str,
    read_prefixes: Sequence[str],
    write_prefixes: Sequence[str],
    kms_key_arn: str | None = None,
) -> Document:
    """What a transform job needs: nothing outside this stack's bucket prefixes, repository,
    job log streams and key (and the two actions AWS cannot scope)."""
    statements = s3_prefix_access_policy(
        bucket_arn=bucket_arn, read_prefixes=read_prefixes, write_prefixes=write_prefixes
    )["Statement"]
    group = _logs_arn(partition, region, account_id, TRANSFORM_LOG_GROUP)
    statements += [
        ECR_LOGIN,
        {
            "Sid": "ProjectRepositoryPull",
            "Effect": "Allow",
            "Action": ECR_PULL_ACTIONS,
            "Resource": repository_arn,
        },
        {
            # The group is shared by every transform job of the account: the role may create
            # it when missing and list its streams, but writes only its own jobs' streams.
            "Sid": "TransformLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:DescribeLogStreams"],
            "Resource": f"{group}:*",
        },
        {
            "Sid": "WriteOwnJobLogStreams",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group}:log-stream:{job_name_prefix}*",
        },
        {
            "Sid": "TransformJobMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": TRANSFORM_LOG_GROUP}},
        },
    ]
    if kms_key_arn:
        statements += kms_use_statements(kms_key_arn)
    return {"Version": "2012-10-17", "Statement": statements}


def notebook_role_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    bucket_arn: str,
    repository_arn: str,
    job_role_arn: str,
    job_name_prefix: str,
    notebook_name: str,
    parameter_arn: str,
    secret_arn: str | None = None,
    kms_key_arn: str | None = None,
    allow_all_buckets: bool = False,
) -> Document:
    """The notebook's own permissions: this stack's data, models, jobs and logs.

    Enough for the README's notebook workflow: `train_and_transform.py --stack` (upload,
    CreateModel passing the job role, CreateTransformJob, follow its logs, point the
    current-model parameter at the new model), the idle auto-stop, the git clone and the
    lifecycle logs. `allow_all_buckets` restores the seed demo's any-bucket S3 access.
    """
    models = _sagemaker_arn(partition, region, account_id, "model", f"{job_name_prefix}*")
    jobs = _sagemaker_arn(partition, region, account_id, "transform-job", f"{job_name_prefix}*")
    notebook = _sagemaker_arn(partition, region, account_id, "notebook-instance", notebook_name)
    job_logs = _logs_arn(partition, region, account_id, TRANSFORM_LOG_GROUP)
    lifecycle_logs = _logs_arn(partition, region, account_id, NOTEBOOK_LOG_GROUP)
    statements: list[Document] = [
        {
            "Sid": "ProjectBucket",
            "Effect": "Allow",
            "Action": S3_BUCKET_ACTIONS,
            "Resource": bucket_arn,
        },
        {
            "Sid": "ProjectBucketObjects",
            "Effect": "Allow",
            "Action": S3_OBJECT_ACTIONS,
            "Resource": f"{bucket_arn}/*",
        },
        ECR_LOGIN,
        {
            "Sid": "ProjectRepositoryPull",
            "Effect": "Allow",
            "Action": ECR_PULL_ACTIONS,
            "Resource": repository_arn,
        },
        {
            "Sid": "StackModelsAndJobs",
            "Effect": "Allow",
            "Action": [
                "sagemaker:AddTags",
                "sagemaker:CreateModel",
                "sagemaker:CreateTransformJob",
                "sagemaker:DeleteModel",
                "sagemaker:DescribeModel",
                "sagemaker:DescribeTransformJob",
                "sagemaker:ListTags",
                "sagemaker:StopTransformJob",
            ],
            "Resource": [models, jobs],
        },
        pass_job_role(job_role_arn),
        {
            "Sid": "CurrentModelParameter",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:PutParameter"],
            "Resource": parameter_arn,
        },
        {
            "Sid": "ReadStackJobLogs",
            "Effect": "Allow",
            "Action": ["logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:GetLogEvents"],
            "Resource": [f"{job_logs}:*", f"{job_logs}:log-stream:{job_name_prefix}*"],
        },
        {
            "Sid": "WriteLifecycleLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            "Resource": [f"{lifecycle_logs}:*", f"{lifecycle_logs}:log-stream:{notebook_name}/*"],
        },
        {
            "Sid": "StopThisNotebookWhenIdle",
            "Effect": "Allow",
            "Action": ["sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance"],
            "Resource": notebook,
        },
    ]
    if allow_all_buckets:
        any_bucket = f"arn:{partition}:s3:::*"
        statements += [
            {
                "Sid": "AnyBucketSeedCompat",
                "Effect": "Allow",
                "Action": S3_BUCKET_ACTIONS,
                "Resource": any_bucket,
            },
            {
                "Sid": "AnyBucketObjectsSeedCompat",
                "Effect": "Allow",
                "Action": S3_OBJECT_ACTIONS,
                "Resource": f"{any_bucket}/*",
            },
        ]
    if secret_arn:
        statements.append(
            {
                "Sid": "GitCredentials",
                "Effect": "Allow",
                "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                "Resource": secret_arn,
            }
        )
    if kms_key_arn:
        statements += kms_use_statements(kms_key_arn)
    return {"Version": "2012-10-17", "Statement": statements}


def logs_principal(region: str) -> str:
    """CloudWatch Logs' regional service principal (it is the one that calls KMS)."""
    return f"logs.{region}.amazonaws.com"


def key_policy(
    *, partition: str, region: str, account_id: str, log_group_names: Sequence[str]
) -> Document:
    """The stack key's policy: the account administers it through IAM (AWS's default
    statement, without which the key becomes unmanageable), CloudWatch Logs may use it for
    this stack's log groups only (encryption-context condition, CloudWatch Logs user guide
    "Encrypt log data using AWS KMS"), and EventBridge may use it to publish to the
    encrypted SNS topic (SNS developer guide, "AWS service event sources"). SageMaker,
    Lambda, SQS, ECR, S3 and Secrets Manager use it on behalf of the roles whose IAM
    policies name it, through grants limited to AWS resources.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsForStackLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": logs_principal(region)},
                # No DescribeKey: it carries no encryption context, so the condition below
                # could never hold for it.
                "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
                "Resource": "*",
                "Condition": {
                    # An encryption-context key is a String condition key (KMS developer guide).
                    "StringEquals": {
                        "kms:EncryptionContext:aws:logs:arn": sorted(
                            _logs_arn(partition, region, account_id, name)
                            for name in log_group_names
                        )
                    }
                },
            },
            {
                "Sid": "EventBridgePublishesToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_PRINCIPAL},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            },
        ],
    }
