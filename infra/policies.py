"""Policy as code: invariants any stack of this program must satisfy.

Each check is a plain function over the stack's resources, given as records
`{"type": <token>, "name": <logical name>, "inputs": {...}, "outputs": {...},
"protect": bool, "provider": <provider reference>, "urn": ..., "dependencies": [urns]}`
with Pulumi's camelCase property names (what the engine records, what mocks receive and
what a `pulumi-policy` stack validation sees as `resource_type`/`name`/`props`/
`opts.protect`/`urn`/`dependencies`). Every function returns
a list of violations (empty when the stack complies), so tests and a policy pack can
share them. Secret values may arrive wrapped in Pulumi's secret envelope; `plain()` unwraps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra import security_checks as security
from infra.records import (
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    Record,
    depends_on,
    plain,
)
from infra.records import as_list as _as_list
from infra.records import document as _document
from infra.records import known as _known
from infra.records import of_type as _of_type
from infra.records import props as _props

__all__ = ["SECRET_SIG", "SIG_KEY", "UNKNOWN", "Expectations", "Record", "check_stack", "plain"]

BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
INGRESS_TYPES = {
    "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
}
SUBNET = "aws:ec2/subnet:Subnet"
NOTEBOOK = "aws:sagemaker/notebookInstance:NotebookInstance"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
AWS_PROVIDER = "pulumi:providers:aws"
# Identity policies: inline role policies and managed policies.
IDENTITY_POLICY_TYPES = {"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"}
# Every policy document property of the resources this program declares.
POLICY_DOCUMENT_PROPERTIES = {
    "aws:iam/role:Role": "assumeRolePolicy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    BUCKET_POLICY: "policy",
    "aws:kms/key:Key": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
}
REQUIRED_TAGS = ("project", "stack", "managed-by")
# Actions that cannot be scoped to a resource (ECR service authorization reference).
UNSCOPABLE_ACTIONS = {"ecr:GetAuthorizationToken"}


def policy_documents(resources: Iterable[Record]) -> list[tuple[str, str, dict[str, Any]]]:
    """(resource name, property, parsed document) for every known policy document."""
    found = []
    for record in resources:
        prop = POLICY_DOCUMENT_PROPERTIES.get(record["type"])
        if prop is None:
            continue
        document = _document(plain((record.get("inputs") or {}).get(prop)))
        if document is not None:
            found.append((record["name"], prop, document))
    return found


def _bucket_of(record: Record, buckets: Sequence[Record]) -> str | None:
    """Logical name of the bucket a bucket-level resource configures.

    Matched by the `bucket` value (id or name) when known, otherwise (preview, before the
    bucket exists) by the record's dependency on the bucket's URN.
    """
    ref = _props(record).get("bucket")
    for bucket in buckets:
        props = _props(bucket)
        if _known(ref) and ref in (props.get("id"), props.get("bucket")):
            return bucket["name"]
        if not _known(ref) and depends_on(record, bucket.get("urn"), "bucket"):
            return bucket["name"]
    return None


def _configured_buckets(resources: Sequence[Record], typ: str, ok: Callable[[dict], bool]) -> set:
    buckets = list(_of_type(resources, BUCKET))
    return {_bucket_of(r, buckets) for r in _of_type(resources, typ) if ok(_props(r))} - {None}


def buckets_not_public(resources: Sequence[Record]) -> list[str]:
    """Every bucket has a public access block with all four switches on, and no public ACL."""
    blocked = _configured_buckets(
        resources,
        PUBLIC_ACCESS_BLOCK,
        lambda p: all(
            p.get(key) is True
            for key in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        ),
    )
    violations = []
    for record in _of_type(resources, BUCKET):
        if record["name"] not in blocked:
            violations.append(f"bucket {record['name']} lacks a full public access block")
        if str(_props(record).get("acl", "private")).startswith("public"):
            violations.append(f"bucket {record['name']} has a public ACL")
    return violations


def buckets_encrypted(resources: Sequence[Record]) -> list[str]:
    """Every bucket has default encryption (SSE-S3 or SSE-KMS)."""

    def encrypts(props: dict) -> bool:
        return any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            in ("AES256", "aws:kms", "aws:kms:dsse")
            for rule in _as_list(props.get("rules"))
        )

    encrypted = _configured_buckets(resources, ENCRYPTION, encrypts)
    return [
        f"bucket {r['name']} has no default encryption"
        for r in _of_type(resources, BUCKET)
        if r["name"] not in encrypted
    ]


def _denies_insecure_transport(document: Mapping[str, Any], bucket_arn: str | None) -> bool:
    for statement in _as_list(document.get("Statement")):
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        if (
            statement.get("Effect") == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in _as_list(statement.get("Action"))
            and str(condition.get("aws:SecureTransport")).lower() == "false"
        ):
            resources = _as_list(statement.get("Resource"))
            if bucket_arn is None or {bucket_arn, f"{bucket_arn}/*"} <= set(resources):
                return True
    return False


def buckets_tls_only(resources: Sequence[Record]) -> list[str]:
    """Every bucket's policy denies any request made without TLS, to the bucket and objects.

    A policy whose document is not known yet (preview of a new bucket: it embeds the
    bucket's ARN) cannot be judged and is accepted; `pulumi up` checks the real document.
    """
    buckets = list(_of_type(resources, BUCKET))
    arns = {r["name"]: _props(r).get("arn") for r in buckets}
    tls_only = set()
    for record in _of_type(resources, BUCKET_POLICY):
        name = _bucket_of(record, buckets)
        raw = _props(record).get("policy")
        if not _known(raw):
            tls_only.add(name)
            continue
        document = _document(raw)
        arn = arns.get(name) if _known(arns.get(name)) else None
        if name and document and _denies_insecure_transport(document, arn):
            tls_only.add(name)
    return [
        f"bucket {r['name']} does not deny non-TLS requests"
        for r in _of_type(resources, BUCKET)
        if r["name"] not in tls_only
    ]


def buckets_protected(resources: Sequence[Record]) -> list[str]:
    """Every bucket is protected from deletion (production stacks)."""
    return [
        f"bucket {r['name']} is not protected"
        for r in _of_type(resources, BUCKET)
        if not r.get("protect")
    ]


def no_security_group_ingress(resources: Sequence[Record]) -> list[str]:
    """No security group (the VPC's default one included) admits inbound traffic."""
    violations = [
        f"{r['type']} {r['name']} has ingress rules"
        for r in _of_type(resources, SECURITY_GROUP, DEFAULT_SECURITY_GROUP)
        if _as_list(_props(r).get("ingress"))
    ]
    for record in resources:
        if record["type"] in INGRESS_TYPES and _props(record).get("type", "ingress") == "ingress":
            violations.append(f"{record['type']} {record['name']} opens inbound traffic")
    return violations


def subnets_in_distinct_zones(resources: Sequence[Record]) -> list[str]:
    """Subnets of one VPC sit in different availability zones, all of them known."""
    seen: dict[tuple[Any, Any], str] = {}
    violations = []
    for record in _of_type(resources, SUBNET):
        props = _props(record)
        zone = props.get("availabilityZone") or props.get("availabilityZoneId")
        if not _known(zone):
            continue  # unknown until the zones are looked up (preview)
        key = (props.get("vpcId"), zone)
        if key in seen:
            violations.append(f"subnets {seen[key]} and {record['name']} share zone {zone}")
        seen[key] = record["name"]
    return violations


def _statements(resources: Sequence[Record]) -> Iterator[tuple[str, dict[str, Any]]]:
    for record in _of_type(resources, *IDENTITY_POLICY_TYPES):
        document = _document(_props(record).get("policy"))
        for statement in _as_list((document or {}).get("Statement")):
            if statement.get("Effect") == "Allow":
                yield record["name"], statement


def _actions_of(statement: Mapping[str, Any], service: str) -> list[str]:
    return [a for a in _as_list(statement.get("Action")) if a.lower().startswith(f"{service}:")]


def s3_access_scoped(resources: Sequence[Record], *, allow_any_bucket: bool = False) -> list[str]:
    """S3 grants name only this stack's buckets (the bucket or keys under it).

    `allow_any_bucket` accepts account-wide access for stacks that opted in with
    `allowAllBuckets` (the seed demo's behaviour).
    """
    arns = [a for a in (_props(r).get("arn") for r in _of_type(resources, BUCKET)) if _known(a)]
    violations = []
    for name, statement in _statements(resources):
        if not _actions_of(statement, "s3"):
            continue
        for resource in _as_list(statement.get("Resource")):
            if not _known(resource):
                continue
            own = any(resource == arn or resource.startswith(f"{arn}/") for arn in arns)
            if own or (allow_any_bucket and resource.split(":::", 1)[-1].startswith("*")):
                continue
            violations.append(f"{name} grants S3 on {resource}, outside this stack's buckets")
    return violations


def ecr_access_scoped(resources: Sequence[Record]) -> list[str]:
    """ECR grants name only this stack's repositories (GetAuthorizationToken excepted)."""
    arns = {
        a for a in (_props(r).get("arn") for r in _of_type(resources, ECR_REPOSITORY)) if _known(a)
    }
    violations = []
    for name, statement in _statements(resources):
        actions = [a for a in _actions_of(statement, "ecr") if a not in UNSCOPABLE_ACTIONS]
        if not actions:
            continue
        for resource in _as_list(statement.get("Resource")):
            if _known(resource) and resource not in arns:
                violations.append(f"{name} grants {actions} on {resource}, not this stack's repo")
    return violations


def notebooks_imdsv2_only(resources: Sequence[Record]) -> list[str]:
    """Notebook instances accept only IMDSv2 (token-based) metadata requests."""
    violations = []
    for record in _of_type(resources, NOTEBOOK):
        config = _props(record).get("instanceMetadataServiceConfiguration") or {}
        if str(config.get("minimumInstanceMetadataServiceVersion")) != "2":
            violations.append(f"notebook {record['name']} allows IMDSv1")
    return violations


def provider_tags_everything(resources: Sequence[Record]) -> list[str]:
    """All AWS resources use an explicit provider whose default tags name project and stack."""
    violations = []
    tagged_providers = set()
    for record in _of_type(resources, AWS_PROVIDER):
        tags = (_document(_props(record).get("defaultTags")) or {}).get("tags") or {}
        missing = [tag for tag in REQUIRED_TAGS if not tags.get(tag)]
        if missing:
            violations.append(f"provider {record['name']} lacks default tags {missing}")
        else:
            tagged_providers.add(record["name"])
    for record in resources:
        if not record["type"].startswith("aws:"):
            continue
        provider = str(record.get("provider") or "")
        # A provider reference is "<urn>::<id>"; its URN ends with the provider's name.
        urn_name = provider.rsplit("::", 1)[0].rsplit("::", 1)[-1] if provider else ""
        if urn_name not in tagged_providers:
            violations.append(f"{record['type']} {record['name']} does not use the tagged provider")
    return violations


def secrets_never_plaintext(
    resources: Sequence[Record], exports: Mapping[str, Any], secrets: Iterable[str]
) -> list[str]:
    """No secret value appears outside a secret envelope in any input, output or export.

    Works on the wire form (envelopes intact): a secret wrapped by Pulumi is encrypted in
    the state; anything else is stored and shown in plain text.
    """
    needles = [s for s in secrets if s]
    violations = []

    def scan(where: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if value.get(SIG_KEY) == SECRET_SIG:
                return
            for key, item in value.items():
                scan(f"{where}.{key}", item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                scan(f"{where}[{index}]", item)
        elif isinstance(value, str) and any(n in value for n in needles):
            violations.append(f"secret in plain text at {where}")

    for record in resources:
        for part in ("inputs", "outputs"):
            scan(f"{record['type']} {record['name']} {part}", record.get(part) or {})
    scan("stack outputs", dict(exports))
    return violations


@dataclass(frozen=True)
class Expectations:
    """What a stack's config says it must have (prod: all on; dev: its switches)."""

    protected: bool = False
    kms: bool = False
    flow_logs: bool = False
    access_logging: bool = False
    tracing: bool = False
    allow_any_bucket: bool = False

    @classmethod
    def of(cls, settings: Any) -> Expectations:
        """From an `infra.settings.Settings` (duck-typed: this module imports no Pulumi)."""
        return cls(
            protected=settings.protect_data,
            kms=settings.kms_key,
            flow_logs=settings.flow_logs,
            access_logging=settings.access_logging,
            tracing=settings.lambda_tracing,
            allow_any_bucket=settings.allow_all_buckets,
        )


def check_stack(
    resources: Sequence[Record],
    exports: Mapping[str, Any] | None = None,
    *,
    secrets: Iterable[str] = (),
    expect: Expectations | None = None,
) -> dict[str, list[str]]:
    """Run every invariant; map each check's name to its violations (only failing checks)."""
    expect = expect or Expectations()
    results = {
        "buckets_not_public": buckets_not_public(resources),
        "buckets_encrypted": buckets_encrypted(resources),
        "buckets_tls_only": buckets_tls_only(resources),
        "no_security_group_ingress": no_security_group_ingress(resources),
        "subnets_in_distinct_zones": subnets_in_distinct_zones(resources),
        "s3_access_scoped": s3_access_scoped(resources, allow_any_bucket=expect.allow_any_bucket),
        "ecr_access_scoped": ecr_access_scoped(resources),
        "notebooks_imdsv2_only": notebooks_imdsv2_only(resources),
        "provider_tags_everything": provider_tags_everything(resources),
        "secrets_never_plaintext": secrets_never_plaintext(resources, exports or {}, secrets),
        "managed_policies_only_on_notebook": security.managed_policies_only_on_notebook(resources),
        "job_role_scoped": security.job_role_scoped(resources),
        "encrypted_with_stack_key": security.encrypted_with_stack_key(
            resources, required=expect.kms
        ),
        "key_policy_principals": security.key_policy_principals(resources),
    }
    if expect.protected:
        results["buckets_protected"] = buckets_protected(resources)
    if expect.flow_logs:
        results["flow_logs_enabled"] = security.flow_logs_enabled(resources)
    if expect.access_logging:
        results["access_logging_enabled"] = security.access_logging_enabled(resources)
    if expect.tracing:
        results["functions_traced"] = security.functions_traced(resources)
    return {name: found for name, found in results.items() if found}
