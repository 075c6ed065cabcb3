"""Policy as code: the invariants hold for every stack, and each one catches its violation."""

from __future__ import annotations

import copy
import json

import pytest
from infra_harness import ECR_PASSWORD, GITHUB_TOKEN, SECRETS, Run

from infra import policies
from infra import security_checks as security
from infra.policies import SECRET_SIG, SIG_KEY, Expectations

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def expectations(run: Run) -> Expectations:
    """What the stack's config asks for (dev: its switches off; prod: everything on)."""
    return Expectations.of(run.stack.settings)


@pytest.mark.parametrize("name", ["dev", "prod", "preview", "prod_preview", "public"])
def test_every_invariant_holds_as_the_config_asks(
    name: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(name)
    expect = expectations(run)
    assert (expect.kms, expect.flow_logs, expect.access_logging, expect.tracing) == (
        (True,) * 4 if name.startswith("prod") else (False,) * 4
    )
    assert policies.check_stack(run.resources, run.exports, secrets=SECRETS, expect=expect) == {}


def test_dev_lacks_exactly_the_controls_its_config_leaves_off(dev: Run) -> None:
    """The conditional checks are real: asked of dev, each finds what dev does not have."""
    everything = Expectations(
        protected=True, kms=True, flow_logs=True, access_logging=True, tracing=True
    )
    assert set(policies.check_stack(dev.resources, dev.exports, expect=everything)) == {
        "buckets_protected",
        "encrypted_with_stack_key",
        "flow_logs_enabled",
        "access_logging_enabled",
        "functions_traced",
    }


def test_any_bucket_switch_is_the_only_way_past_the_s3_scope(public: Run) -> None:
    assert expectations(public).allow_any_bucket
    assert policies.check_stack(public.resources, public.exports, expect=expectations(public)) == {}
    violations = policies.s3_access_scoped(public.resources)
    assert violations == [
        f"{public.named(ROLE_POLICY, 'notebook-access')['name']} grants S3 on {arn}, "
        "outside this stack's buckets"
        for arn in ("arn:aws:s3:::*", "arn:aws:s3:::*/*")
    ]


def test_dev_buckets_are_not_protected(dev: Run) -> None:
    assert policies.buckets_protected(dev.resources) == [
        f"bucket {dev.named('aws:s3/bucket:Bucket', 'data')['name']} is not protected"
    ]


def test_token_is_present_only_inside_secret_envelopes(dev: Run) -> None:
    """The scan is meaningful: the token is really in the inputs, wrapped."""
    wrapped = json.dumps(
        [r["inputs"] for r in dev.resources if GITHUB_TOKEN in json.dumps(r["inputs"])]
    )
    assert GITHUB_TOKEN in wrapped and SECRET_SIG in wrapped
    assert policies.secrets_never_plaintext(dev.resources, dev.exports, SECRETS) == []
    # ...and the scanner does see plain values: the repository URL is stored in clear.
    assert policies.secrets_never_plaintext(dev.resources, dev.exports, ["octo-ml/"]) != []


def test_no_export_is_secret_or_contains_a_secret(dev: Run, prod: Run) -> None:
    for run in (dev, prod):
        text = json.dumps(run.exports)
        assert SIG_KEY not in text
        assert not any(secret in text for secret in SECRETS)


# --- each invariant catches the violation it is about -------------------------------------


def mutated(run: Run, typ: str, change) -> list[dict]:
    """A copy of the run's records with `change(props)` applied to every `typ` record's
    inputs and outputs (after `up`, both hold the value)."""
    records = copy.deepcopy(run.resources)
    for record in records:
        if record["type"] == typ:
            change(record["inputs"])
            change(record["outputs"])
    return records


def without(run: Run, typ: str) -> list[dict]:
    return [r for r in run.resources if r["type"] != typ]


def test_public_bucket_is_caught(dev: Run) -> None:
    assert policies.buckets_not_public(without(dev, policies.PUBLIC_ACCESS_BLOCK))
    opened = mutated(dev, policies.PUBLIC_ACCESS_BLOCK, lambda i: i.update(blockPublicPolicy=False))
    assert policies.buckets_not_public(opened)
    acl = mutated(dev, policies.BUCKET, lambda i: i.update(acl="public-read"))
    assert policies.buckets_not_public(acl) == [
        f"bucket {dev.one(policies.BUCKET)['name']} has a public ACL"
    ]


def test_unencrypted_bucket_is_caught(dev: Run) -> None:
    assert policies.buckets_encrypted(without(dev, policies.ENCRYPTION))


def test_missing_or_weak_tls_policy_is_caught(dev: Run) -> None:
    assert policies.buckets_tls_only(without(dev, policies.BUCKET_POLICY))

    def objects_only(inputs: dict) -> None:
        document = json.loads(inputs["policy"])
        document["Statement"][0]["Resource"] = document["Statement"][0]["Resource"][1:]
        inputs["policy"] = json.dumps(document)

    assert policies.buckets_tls_only(mutated(dev, policies.BUCKET_POLICY, objects_only))


def test_ingress_is_caught(dev: Run) -> None:
    rule = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
    assert policies.no_security_group_ingress(
        mutated(dev, policies.SECURITY_GROUP, lambda i: i.update(ingress=[rule]))
    )
    assert policies.no_security_group_ingress(
        [
            *dev.resources,
            {
                "type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                "name": "ssh",
                "inputs": {"fromPort": 22},
            },
        ]
    )


def test_subnets_sharing_a_zone_are_caught(dev: Run) -> None:
    same = mutated(dev, policies.SUBNET, lambda i: i.update(availabilityZone="eu-west-1a"))
    assert policies.subnets_in_distinct_zones(same)


def test_broad_s3_and_ecr_grants_are_caught(dev: Run) -> None:
    def widen(inputs: dict) -> None:
        document = json.loads(inputs["policy"])
        for statement in document["Statement"]:
            if statement["Sid"] in ("ProjectBucketObjects", "ProjectRepositoryPull"):
                statement["Resource"] = "*"
        inputs["policy"] = json.dumps(document)

    widened = mutated(dev, ROLE_POLICY, widen)
    assert policies.s3_access_scoped(widened)
    assert policies.ecr_access_scoped(widened)


def test_the_job_roles_prefix_grants_are_within_the_invariants_reach(dev: Run) -> None:
    """The job role's prefix grants are checked like every other S3 grant."""
    grant = dev.named(ROLE_POLICY, "job-access")

    def elsewhere(inputs: dict) -> None:
        document = json.loads(inputs["policy"])
        for statement in document["Statement"]:
            if statement["Sid"] == "ReadPrefixes":
                statement["Resource"] = ["arn:aws:s3:::someone-elses-bucket/*"]
        inputs["policy"] = json.dumps(document)

    records = copy.deepcopy(dev.resources)
    for record in records:
        if record["urn"] == grant["urn"]:
            elsewhere(record["inputs"])
            elsewhere(record["outputs"])
    assert policies.s3_access_scoped(records) == [
        f"{grant['name']} grants S3 on arn:aws:s3:::someone-elses-bucket/*, "
        "outside this stack's buckets"
    ]
    assert security.job_role_scoped(records) == [
        f"job role {dev.named('aws:iam/role:Role', 'job')['name']} ({grant['name']}) grants "
        "['s3:GetObject'] on arn:aws:s3:::someone-elses-bucket/*, outside this stack"
    ]


def test_imdsv1_is_caught(dev: Run) -> None:
    v1 = {"minimumInstanceMetadataServiceVersion": "1"}
    assert policies.notebooks_imdsv2_only(
        mutated(dev, policies.NOTEBOOK, lambda i: i.update(instanceMetadataServiceConfiguration=v1))
    )


def test_untagged_or_default_provider_is_caught(dev: Run) -> None:
    untagged = mutated(dev, policies.AWS_PROVIDER, lambda i: i.update(defaultTags="{}"))
    assert policies.provider_tags_everything(untagged)
    records = copy.deepcopy(dev.resources)
    vpc = next(r for r in records if r["type"] == "aws:ec2/vpc:Vpc")
    vpc["provider"] = "urn:pulumi:dev::p::pulumi:providers:aws::default_7_51_1::id"
    assert policies.provider_tags_everything(records) == [
        f"aws:ec2/vpc:Vpc {vpc['name']} does not use the tagged provider"
    ]


def test_plaintext_secret_is_caught_in_inputs_outputs_and_exports(dev: Run) -> None:
    leaked = mutated(
        dev,
        "aws:sagemaker/codeRepository:CodeRepository",
        lambda i: i["gitConfig"].update(repositoryUrl=f"https://x:{GITHUB_TOKEN}@github.com/a/b"),
    )
    assert policies.secrets_never_plaintext(leaked, {}, SECRETS)
    assert policies.secrets_never_plaintext(dev.resources, {"token": GITHUB_TOKEN}, SECRETS)
    assert policies.secrets_never_plaintext(
        dev.resources, {"nested": [{"password": ECR_PASSWORD}]}, SECRETS
    ) == ["secret in plain text at stack outputs.nested[0].password"]
