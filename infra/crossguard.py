"""The invariants of `infra.policies` as a CrossGuard policy pack (`policy/`).

`pulumi preview --policy-pack policy` (and `pulumi up`) hands every resource of the stack to
the stack validations below, which turn pulumi-policy's `PolicyResource`s into the records
`infra.policies` reads and report each violation. Nothing is re-implemented here: a check
failing under the unit tests' mocks fails the same way under the CLI.

Constructing `PolicyPack` starts the analyzer's gRPC server and never returns, so only
`serve()` builds it (from `policy/__main__.py`); `validations()` and `records()` are plain
functions the tests call with realistic `PolicyResource`s.

Checks that depend on the stack's config (protection, KMS, flow logs, access logging,
tracing) are separate policies, all mandatory by default (the prod posture); a dev stack
turns them off with `--policy-pack-config policy/dev.json` (enforcementLevel "disabled").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import proxy as policy_proxy

from infra import policies
from infra import security_checks as security
from infra.records import UNKNOWN, Record

PACK_NAME = "sagemaker-batch-transform-security"
_UNKNOWNS = {
    policy_proxy.UNKNOWN_BOOLEAN_VALUE,
    policy_proxy.UNKNOWN_NUMBER_VALUE,
    policy_proxy.UNKNOWN_STRING_VALUE,
    policy_proxy.UNKNOWN_ARRAY_VALUE,
    policy_proxy.UNKNOWN_ASSET_VALUE,
    policy_proxy.UNKNOWN_ARCHIVE_VALUE,
    policy_proxy.UNKNOWN_OBJECT_VALUE,
}

Check = Callable[[Sequence[Record], Mapping[str, Any]], list[str]]


def _plain(value: Any) -> Any:
    """A property value without pulumi-policy's unknown-checking proxies (reading an
    unknown through them raises); every kind of unknown becomes `infra.records.UNKNOWN`."""
    if isinstance(value, str):
        return UNKNOWN if value in _UNKNOWNS else value
    if isinstance(value, Mapping):
        target = value.get("__target", value)  # pulumi-policy's proxy hands out its dict
        return {key: _plain(item) for key, item in dict(target).items()}
    if isinstance(value, Sequence):
        try:
            target = value["__target"]  # type: ignore[call-overload]
        except (TypeError, KeyError, IndexError):
            target = value
        return [_plain(item) for item in list(target)]
    return value


def records(resources: Sequence[PolicyResource]) -> list[dict[str, Any]]:
    """The stack's resources as `infra.policies` records (props serve as inputs)."""
    out = []
    for resource in resources:
        provider = resource.provider
        out.append(
            {
                "type": resource.resource_type,
                "name": resource.name,
                "urn": resource.urn,
                "parent": resource.opts.parent or (resource.parent.urn if resource.parent else ""),
                "protect": bool(resource.opts.protect),
                # "<provider urn>::<id>", the engine's provider reference (only the URN is read).
                "provider": f"{provider.urn}::policy" if provider else "",
                "dependencies": [d.urn for d in resource.dependencies],
                "property_dependencies": {
                    prop: [d.urn for d in deps]
                    for prop, deps in resource.property_dependencies.items()
                },
                "inputs": _plain(resource.props),
                "outputs": {},
            }
        )
    return out


@dataclass(frozen=True)
class Validation:
    """One stack policy: its name, what it asserts, the check, its default enforcement."""

    name: str
    description: str
    check: Check
    config_schema: PolicyConfigSchema | None = None


def _always(function: Callable[[Sequence[Record]], list[str]]) -> Check:
    return lambda resources, _config: function(resources)


def validations() -> list[Validation]:
    """Every invariant of `infra.policies.check_stack`, one policy each."""
    allow_any = PolicyConfigSchema({"allowAnyBucket": {"type": "boolean", "default": False}})
    return [
        Validation(
            "buckets-not-public",
            "Buckets block all public access",
            _always(policies.buckets_not_public),
        ),
        Validation(
            "buckets-encrypted",
            "Buckets have default encryption",
            _always(policies.buckets_encrypted),
        ),
        Validation(
            "buckets-tls-only",
            "Bucket policies deny non-TLS requests",
            _always(policies.buckets_tls_only),
        ),
        Validation(
            "no-ingress",
            "No security group admits inbound traffic",
            _always(policies.no_security_group_ingress),
        ),
        Validation(
            "subnets-distinct-zones",
            "Subnets sit in distinct zones",
            _always(policies.subnets_in_distinct_zones),
        ),
        Validation(
            "s3-access-scoped",
            "S3 grants name only this stack's buckets (allowAnyBucket: the seed's opt-in)",
            lambda resources, config: policies.s3_access_scoped(
                resources, allow_any_bucket=bool(config.get("allowAnyBucket", False))
            ),
            allow_any,
        ),
        Validation(
            "ecr-access-scoped",
            "ECR grants name only this stack's repository",
            _always(policies.ecr_access_scoped),
        ),
        Validation(
            "notebooks-imdsv2",
            "Notebook instances accept only IMDSv2",
            _always(policies.notebooks_imdsv2_only),
        ),
        Validation(
            "provider-tags",
            "Every resource uses the tagged explicit provider",
            _always(policies.provider_tags_everything),
        ),
        Validation(
            "managed-policies-only-on-notebook",
            "No role but the notebook's has an AWS-managed policy",
            _always(security.managed_policies_only_on_notebook),
        ),
        Validation(
            "job-role-scoped",
            "The job role's statements name only this stack",
            _always(security.job_role_scoped),
        ),
        Validation(
            "key-policy-principals",
            "The stack key admits only its account and the listed services",
            _always(security.key_policy_principals),
        ),
        Validation(
            "encrypted-with-stack-key",
            "A stack key exists and everything holding data or messages names it",
            lambda resources, _config: security.encrypted_with_stack_key(resources, required=True),
        ),
        Validation(
            "buckets-protected",
            "Buckets are protected from deletion",
            _always(policies.buckets_protected),
        ),
        Validation(
            "vpc-flow-logs", "Every VPC records flow logs", _always(security.flow_logs_enabled)
        ),
        Validation(
            "s3-access-logging",
            "Data buckets log server access",
            _always(security.access_logging_enabled),
        ),
        Validation(
            "lambda-tracing",
            "Functions have X-Ray active tracing",
            _always(security.functions_traced),
        ),
    ]


# The policies a dev stack (Pulumi.dev.yaml) turns off: its switches are off by default.
DEV_DISABLED = (
    "encrypted-with-stack-key",
    "buckets-protected",
    "vpc-flow-logs",
    "s3-access-logging",
    "lambda-tracing",
)


def stack_policy(validation: Validation) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in validation.check(records(args.resources), args.get_config()):
            report_violation(message, None)

    return StackValidationPolicy(
        name=validation.name,
        description=validation.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=validation.config_schema,
    )


def serve() -> None:
    """Start the policy pack (blocks: the Pulumi CLI talks to it over gRPC)."""
    PolicyPack(
        name=PACK_NAME,
        policies=[stack_policy(v) for v in validations()],
        enforcement_level=EnforcementLevel.MANDATORY,
        description="The sagemaker-batch-transform stack's security invariants (infra/policies.py)",
    )
