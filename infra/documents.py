"""Policy documents as plain Python dicts, built from resolved ARNs.

Each builder is a pure function, so the IAM linter and the tests can check exactly the JSON
that lands in AWS; `policy_json()` turns a builder plus Pulumi Outputs into an
`Output[str]` for a resource's `policy` argument. Nothing here is string-templated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi

Document = dict[str, Any]

# Object-level actions a SageMaker job or notebook needs on its data.
S3_OBJECT_ACTIONS = [
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
]
S3_BUCKET_ACTIONS = ["s3:GetBucketLocation", "s3:ListBucket"]
# What pulling an image needs (ECR user guide, "Private repository policies").
ECR_PULL_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
]


def _document(*statements: Document) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _partition(arn: str) -> str:
    return arn.split(":")[1]


def assume_role_policy(service: str) -> Document:
    """Trust policy letting one AWS service principal assume the role."""
    return _document(
        {
            "Sid": "TrustService",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
        }
    )


def kms_use_statements(kms_key_arn: str) -> list[Document]:
    """Encrypt/decrypt with the stack's key, and grants only for AWS services (volumes)."""
    return [
        {
            "Sid": "UseStackKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            "Resource": kms_key_arn,
        },
        {
            "Sid": "GrantStackKeyToServices",
            "Effect": "Allow",
            "Action": "kms:CreateGrant",
            "Resource": kms_key_arn,
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]


def s3_prefix_access_policy(
    *, bucket_arn: str, read_prefixes: Sequence[str] = (), write_prefixes: Sequence[str] = ()
) -> Document:
    """Read some prefixes and write others of one bucket (for the transform trigger's grants).

    Prefixes are key prefixes without a leading slash, e.g. "transform/input/".
    """
    if not read_prefixes and not write_prefixes:
        raise ValueError("s3_prefix_access_policy needs at least one prefix")
    statements: list[Document] = [
        {
            "Sid": "ListPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {
                "StringLike": {"s3:prefix": [f"{p}*" for p in [*read_prefixes, *write_prefixes]]}
            },
        }
    ]
    if read_prefixes:
        statements.append(
            {
                "Sid": "ReadPrefixes",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [f"{bucket_arn}/{p}*" for p in read_prefixes],
            }
        )
    if write_prefixes:
        statements.append(
            {
                "Sid": "WritePrefixes",
                "Effect": "Allow",
                "Action": ["s3:AbortMultipartUpload", "s3:PutObject"],
                "Resource": [f"{bucket_arn}/{p}*" for p in write_prefixes],
            }
        )
    return _document(*statements)


def _deny_insecure_transport(bucket_arn: str) -> Document:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_bucket_policy(bucket_arn: str) -> Document:
    """Deny every request to the bucket and its objects that does not use TLS."""
    return _document(_deny_insecure_transport(bucket_arn))


# Where the log bucket keeps each kind of log (S3 adds AWSLogs/<account>/... for flow logs).
ACCESS_LOGS_PREFIX = "access-logs/"
FLOW_LOGS_PREFIX = "flow-logs/"
S3_LOGGING_PRINCIPAL = "logging.s3.amazonaws.com"
LOG_DELIVERY_PRINCIPAL = "delivery.logs.amazonaws.com"


def log_bucket_policy(
    *,
    log_bucket_arn: str,
    account_id: str,
    region: str,
    source_bucket_arn: str | None = None,
    flow_logs: bool = False,
) -> Document:
    """TLS only; S3 may write the data bucket's access logs and VPC log delivery the flow
    logs, each only under its own prefix and only for this account (S3 user guide, "Enabling
    Amazon S3 server access logging"; VPC user guide, "Flow logs to Amazon S3")."""
    partition = _partition(log_bucket_arn)
    same_account = {"aws:SourceAccount": account_id}
    statements: list[Document] = [_deny_insecure_transport(log_bucket_arn)]
    if source_bucket_arn:
        statements.append(
            {
                "Sid": "S3ServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": S3_LOGGING_PRINCIPAL},
                "Action": "s3:PutObject",
                "Resource": f"{log_bucket_arn}/{ACCESS_LOGS_PREFIX}*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": source_bucket_arn},
                    "StringEquals": same_account,
                },
            }
        )
    if flow_logs:
        delivery = {
            "StringEquals": same_account,
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:{region}:{account_id}:*"},
        }
        statements += [
            {
                "Sid": "VpcFlowLogsWrite",
                "Effect": "Allow",
                "Principal": {"Service": LOG_DELIVERY_PRINCIPAL},
                "Action": "s3:PutObject",
                "Resource": f"{log_bucket_arn}/{FLOW_LOGS_PREFIX}AWSLogs/{account_id}/*",
                "Condition": delivery,
            },
            {
                "Sid": "VpcFlowLogsAclCheck",
                "Effect": "Allow",
                "Principal": {"Service": LOG_DELIVERY_PRINCIPAL},
                "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
                "Resource": log_bucket_arn,
                "Condition": delivery,
            },
        ]
    return _document(*statements)


def ecr_lifecycle_policy(keep_images: int) -> Document:
    """ECR lifecycle policy (not IAM): expire everything beyond the newest `keep_images`."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"Keep the last {keep_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images,
                },
                "action": {"type": "expire"},
            }
        ]
    }


def policy_json(
    builder: Callable[..., Document],
    inputs: Mapping[str, pulumi.Input[Any]] | None = None,
    **static: Any,
) -> pulumi.Output[str]:
    """`builder(**resolved inputs, **static)` serialised once every Output input is known."""
    if not inputs:
        return pulumi.Output.from_input(json.dumps(builder(**static), sort_keys=True))
    return pulumi.Output.all(**inputs).apply(
        lambda resolved: json.dumps(builder(**resolved, **static), sort_keys=True)
    )
