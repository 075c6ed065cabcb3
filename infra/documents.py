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


def execution_role_policy(
    *,
    bucket_arn: str,
    repository_arn: str,
    secret_arn: str | None = None,
    kms_key_arn: str | None = None,
    allow_all_buckets: bool = False,
) -> Document:
    """The SageMaker execution role's own permissions, scoped to this stack's resources.

    `allow_all_buckets` restores the seed demo's read/write on any bucket in the account;
    it is off unless the stack's config says otherwise.
    """
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
        {
            # GetAuthorizationToken has no resource-level permissions (ECR service authorization
            # reference), so "*" is the only valid resource for it.
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "ProjectRepositoryPull",
            "Effect": "Allow",
            "Action": ECR_PULL_ACTIONS,
            "Resource": repository_arn,
        },
    ]
    if allow_all_buckets:
        any_bucket = f"arn:{_partition(bucket_arn)}:s3:::*"
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
    return _document(*statements)


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


def tls_only_bucket_policy(bucket_arn: str) -> Document:
    """Deny every request to the bucket and its objects that does not use TLS."""
    return _document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


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
