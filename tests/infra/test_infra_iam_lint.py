"""Every IAM policy document the stack declares passes parliament with nothing above LOW."""

from __future__ import annotations

import json
import warnings

import pytest
from infra_harness import Run, variant

from infra import documents, policies

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # parliament imports pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import parliament

ALLOWED = {"INFO", "LOW"}
# LOW in parliament, but a misspelt action silently grants nothing: treat it as an error.
TYPOS = {"UNKNOWN_ACTION", "UNKNOWN_PREFIX"}


def findings(document: dict) -> list[tuple[str, str, str]]:
    policy = parliament.analyze_policy_string(json.dumps(document))
    enhanced = [parliament.enhance_finding(f) for f in policy.findings]
    return [(f.issue, f.severity, str(f.detail)) for f in enhanced]


def blocking(document: dict) -> list[tuple[str, str, str]]:
    return [f for f in findings(document) if f[1] not in ALLOWED or f[0] in TYPOS]


def lintable(run: Run) -> list[tuple[str, dict]]:
    """(name, document) for every policy document; trust policies get the role as Resource.

    parliament lints identity policies and insists on a Resource; a role's trust policy is
    implicitly about the role itself, so that is the Resource it is checked against.
    """
    found = []
    for name, prop, document in policies.policy_documents(run.resources):
        if prop == "assumeRolePolicy":
            role = next(
                r for r in run.of_type("aws:iam/role:Role") if r["name"] == name
            )  # the trigger's component, role and function share a logical name
            document = copy_with_resource(document, role["outputs"]["arn"])
        found.append((f"{name}.{prop}", document))
    return found


def copy_with_resource(document: dict, resource: str) -> dict:
    return {
        **document,
        "Statement": [{**s, "Resource": resource} for s in document["Statement"]],
    }


# Every policy document of a stack, by `<logical name minus the stack prefix>.<property>`.
STACK_DOCUMENTS = {
    "sagemaker.assumeRolePolicy",  # execution role: trusted by SageMaker
    "sagemaker-project-access.policy",  # its scoped bucket / repository / secret access
    "data-policy.policy",  # bucket policy: TLS only
    "trigger.assumeRolePolicy",  # the trigger function's role: trusted by Lambda
    "trigger-permissions.policy",  # start this stack's jobs, PassRole, logs, queue
    "sagemaker-transform-prefixes.policy",  # execution role: read input, write output
    "transform-jobs-policy.policy",  # SNS topic policy: EventBridge may publish
}


@pytest.mark.parametrize("name", ["dev", "prod", "public"])
def test_stack_policies_pass_parliament(name: str) -> None:
    run = variant(name)
    documents_found = lintable(run)
    prefix = f"{run.stack.settings.prefix}-"
    names = {doc_name.removeprefix(prefix) for doc_name, _ in documents_found}
    assert names == STACK_DOCUMENTS  # every document is linted, the trigger's included
    for doc_name, document in documents_found:
        assert blocking(document) == [], doc_name


def test_builders_pass_parliament_in_every_combination() -> None:
    arns = {
        "bucket_arn": "arn:aws:s3:::b",
        "repository_arn": "arn:aws:ecr:eu-west-1:123456789012:repository/r",
    }
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf"
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for allow_all in (False, True):
        for extra in ({}, {"secret_arn": secret}, {"kms_key_arn": key}):
            document = documents.execution_role_policy(**arns, **extra, allow_all_buckets=allow_all)
            assert blocking(document) == [], (allow_all, extra)
    prefixes = documents.s3_prefix_access_policy(
        bucket_arn="arn:aws:s3:::b", read_prefixes=["in/"], write_prefixes=["out/"]
    )
    assert blocking(prefixes) == []
    assert blocking(documents.tls_only_bucket_policy("arn:aws:s3:::b")) == []


@pytest.mark.parametrize(
    ("action", "resource", "issue"),
    [
        ("s3:GetObject", "arn:aws:s3:::bucket", "RESOURCE_MISMATCH"),  # MEDIUM
        ("s3:GetObjekt", "*", "UNKNOWN_ACTION"),  # LOW, a typo
    ],
)
def test_the_linter_does_flag_a_bad_policy(action: str, resource: str, issue: str) -> None:
    bad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    }
    assert [f[0] for f in blocking(bad)] == [issue]
