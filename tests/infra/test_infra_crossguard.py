"""The CrossGuard pack's validations, called directly with pulumi-policy's own objects.

`PolicyPack(...)` starts a gRPC server and blocks, so the pack is never constructed here;
each `StackValidationPolicy` is built and its `validate` called with `StackValidationArgs`
holding `PolicyResource`s made from the mock runs: after `up` (outputs as props) and in a
first preview (props behind pulumi-policy's unknown-checking proxy, unknowns as its
sentinels), exactly as the analyzer hands them over.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_harness import REPO_ROOT, Run
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)
from pulumi_policy import proxy as policy_proxy

from infra import crossguard
from infra.policies import UNKNOWN, Expectations, check_stack, plain

POLICY_DIR = REPO_ROOT / "policy"


def _props(value: Any) -> Any:
    """Wire values as the analyzer deserializes them: secrets opened, unknowns as sentinels."""
    value = plain(value)
    if value == UNKNOWN:
        return policy_proxy.UNKNOWN_STRING_VALUE
    if isinstance(value, dict):
        return {k: _props(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_props(v) for v in value]
    return value


def policy_resources(run: Run, records: list[dict] | None = None) -> list[PolicyResource]:
    records = records if records is not None else run.resources
    by_urn: dict[str, PolicyResource] = {}
    providers = {r["urn"]: r for r in records if r["type"].startswith("pulumi:providers:")}
    for record in records:
        state = record["outputs"] or record["inputs"]  # after up the state; in preview inputs
        provider_urn = (record.get("provider") or "").rsplit("::", 1)[0]
        provider = providers.get(provider_urn)
        by_urn[record["urn"]] = PolicyResource(
            resource_type=record["type"],
            props=policy_proxy.unknown_checking_proxy(_props({**record["inputs"], **state})),
            urn=record["urn"],
            name=record["name"],
            opts=PolicyResourceOptions(
                protect=bool(record.get("protect")),
                ignore_changes=[],
                delete_before_replace=record.get("delete_before_replace"),
                aliases=[],
                custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
                additional_secret_outputs=[],
                parent=record.get("parent") or None,
            ),
            provider=(
                PolicyProviderResource(
                    provider["type"], _props(provider["inputs"]), provider["urn"], provider["name"]
                )
                if provider
                else None
            ),
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
    for record in records:
        resource = by_urn[record["urn"]]
        resource.dependencies = [by_urn[u] for u in record["dependencies"] if u in by_urn]
        resource.property_dependencies = {
            prop: [by_urn[u] for u in urns if u in by_urn]
            for prop, urns in record.get("property_dependencies", {}).items()
        }
    return list(by_urn.values())


def violations(
    validation: crossguard.Validation,
    resources: list[PolicyResource],
    config: dict[str, Any] | None = None,
) -> list[str]:
    """What the policy, as the pack registers it, reports for this stack."""
    found: list[str] = []
    policy = crossguard.stack_policy(validation)
    policy.validate(
        StackValidationArgs(resources, config or {}),
        lambda message, urn=None: found.append(message),
    )
    return found


VALIDATIONS = {v.name: v for v in crossguard.validations()}


def test_the_pack_covers_every_invariant_once() -> None:
    assert len(VALIDATIONS) == len(crossguard.validations())
    everything = Expectations(True, True, True, True, True)
    # Every check_stack invariant but the secret scan (it needs the secret values, which
    # only the program's own tests hold) is one policy of the pack.
    checks = set(check_stack([], expect=everything).keys()) | {
        "buckets_not_public", "buckets_encrypted", "buckets_tls_only", "no_security_group_ingress",
        "subnets_in_distinct_zones", "s3_access_scoped", "ecr_access_scoped",
        "notebooks_imdsv2_only", "provider_tags_everything", "managed_policies_only_on_notebook",
        "job_role_scoped", "key_policy_principals", "encrypted_with_stack_key",
        "buckets_protected", "flow_logs_enabled", "access_logging_enabled", "functions_traced",
    }  # fmt: skip
    assert len(checks) == len(VALIDATIONS)
    assert set(crossguard.DEV_DISABLED) <= set(VALIDATIONS)


@pytest.mark.parametrize("name", sorted(VALIDATIONS))
def test_prod_passes_every_policy_after_up_and_in_preview(
    name: str, prod: Run, prod_preview: Run
) -> None:
    validation = VALIDATIONS[name]
    assert violations(validation, policy_resources(prod)) == []
    assert violations(validation, policy_resources(prod_preview, prod_preview.resources)) == []


@pytest.mark.parametrize("name", sorted(VALIDATIONS))
def test_dev_passes_all_but_the_policies_its_config_turns_off(name: str, dev: Run) -> None:
    found = violations(VALIDATIONS[name], policy_resources(dev))
    assert bool(found) == (name in crossguard.DEV_DISABLED), found


def test_the_any_bucket_opt_in_is_a_policy_config(public: Run) -> None:
    validation = VALIDATIONS["s3-access-scoped"]
    resources = policy_resources(public)
    assert len(violations(validation, resources)) == 2
    assert violations(validation, resources, {"allowAnyBucket": True}) == []


def test_a_violation_is_reported_through_the_pack(prod: Run) -> None:
    records = copy.deepcopy(prod.resources)
    for record in records:
        if record["type"] == "aws:lambda/function:Function":
            record["outputs"]["tracingConfig"] = {"mode": "PassThrough"}
    found = violations(VALIDATIONS["lambda-tracing"], policy_resources(prod, records))
    assert found == [f"function {prod.one('aws:lambda/function:Function')['name']} is not traced"]


def test_records_keep_what_the_checks_read(prod_preview: Run) -> None:
    resources = policy_resources(prod_preview, prod_preview.resources)
    converted = {r["urn"]: r for r in crossguard.records(resources)}
    for original in prod_preview.resources:
        record = converted[original["urn"]]
        assert record["type"] == original["type"] and record["protect"] == original["protect"]
        assert record["dependencies"] == original["dependencies"]
        assert record["provider"].rsplit("::", 1)[0] == original["provider"].rsplit("::", 1)[0]
    # Unknowns of every kind come out as the one sentinel the checks skip.
    assert any(UNKNOWN in json.dumps(r["inputs"]) for r in converted.values())
    assert crossguard._plain(policy_proxy.UNKNOWN_ARRAY_VALUE) == UNKNOWN


def test_policy_pack_files() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}
    dev = json.loads((POLICY_DIR / "dev.json").read_text())
    assert dev == {name: {"enforcementLevel": "disabled"} for name in crossguard.DEV_DISABLED}
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [ast.unparse(n.value) for n in tree.body if isinstance(n, ast.Expr)]
    assert calls[-1] == "serve()"
    readme = Path(REPO_ROOT / "README.md").read_text()
    assert "--policy-pack policy" in readme
    assert "--policy-pack-config policy/dev.json" in readme
