"""Every IAM policy document the stack declares passes parliament with nothing above LOW."""

from __future__ import annotations

import json
import warnings

import pytest
from infra_harness import Run, variant

from infra import documents, grants, policies

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
    "job.assumeRolePolicy",  # job role: trusted by SageMaker
    "job-access.policy",  # its prefixes, repository, log streams (and key)
    "notebook.assumeRolePolicy",  # notebook role: trusted by SageMaker
    "notebook-access.policy",  # this stack's data, models, jobs, logs, secret
    "data-policy.policy",  # bucket policy: TLS only
    "trigger.assumeRolePolicy",  # the trigger function's role: trusted by Lambda
    "trigger-permissions.policy",  # start this stack's jobs, PassRole, logs, queue
    "transform-jobs-policy.policy",  # SNS topic policy: EventBridge may publish
}
# prod adds the key policy and the log bucket's policy (flow logs and access logs).
PROD_DOCUMENTS = STACK_DOCUMENTS | {"key.policy", "logs-policy.policy"}


@pytest.mark.parametrize("name", ["dev", "prod", "public"])
def test_stack_policies_pass_parliament(name: str) -> None:
    run = variant(name)
    documents_found = lintable(run)
    prefix = f"{run.stack.settings.prefix}-"
    names = {doc_name.removeprefix(prefix) for doc_name, _ in documents_found}
    # Every document is linted, the trigger's, the key's and the log bucket's included.
    assert names == (PROD_DOCUMENTS if name == "prod" else STACK_DOCUMENTS)
    for doc_name, document in documents_found:
        assert blocking(document) == [], doc_name


ACCOUNT_ARGS = {"partition": "aws", "region": "eu-west-1", "account_id": "123456789012"}
BUCKET = "arn:aws:s3:::b"
REPOSITORY = "arn:aws:ecr:eu-west-1:123456789012:repository/r"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize("key", [None, KEY])
def test_builders_pass_parliament_in_every_combination(key: str | None) -> None:
    for allow_all in (False, True):
        for secret in (None, SECRET):
            document = grants.notebook_role_policy(
                **ACCOUNT_ARGS,
                bucket_arn=BUCKET,
                repository_arn=REPOSITORY,
                job_role_arn="arn:aws:iam::123456789012:role/job",
                job_name_prefix="sbt-dev-1a2b--",
                notebook_name="nb",
                parameter_arn="arn:aws:ssm:eu-west-1:123456789012:parameter/p",
                secret_arn=secret,
                kms_key_arn=key,
                allow_all_buckets=allow_all,
            )
            assert blocking(document) == [], (allow_all, secret)
    job = grants.job_role_policy(
        **ACCOUNT_ARGS,
        bucket_arn=BUCKET,
        repository_arn=REPOSITORY,
        job_name_prefix="sbt-dev-1a2b--",
        read_prefixes=["runs/dev/*/model/", "in/"],
        write_prefixes=["out/"],
        kms_key_arn=key,
    )
    assert blocking(job) == []
    prefixes = documents.s3_prefix_access_policy(
        bucket_arn=BUCKET, read_prefixes=["in/"], write_prefixes=["out/"]
    )
    assert blocking(prefixes) == []
    assert blocking(documents.tls_only_bucket_policy(BUCKET)) == []
    for source, flow in ((None, True), (BUCKET, False), (BUCKET, True)):
        logs = documents.log_bucket_policy(
            log_bucket_arn="arn:aws:s3:::logs",
            account_id="123456789012",
            region="eu-west-1",
            source_bucket_arn=source,
            flow_logs=flow,
        )
        assert blocking(logs) == [], (source, flow)
    key_policy = grants.key_policy(**ACCOUNT_ARGS, log_group_names=["/aws/lambda/f"])
    assert blocking(key_policy) == []


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
