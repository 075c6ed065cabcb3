"""Runs the Pulumi program under Pulumi's mocks (no CLI, no cloud) and records everything.

Imported by the tests and conftest.py (a uniquely named module, unlike `conftest`).

Each variant (dev, prod, preview, public repository) runs once per session; tests read the
recorded resources, invokes and stack outputs. Records keep Pulumi's wire form, secret
envelopes included, so tests can tell encrypted values from plain text; assets and archives
(the Lambda's code) become plain dicts naming their files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.policies import UNKNOWN

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "sagemaker-batch-transform"
ACCOUNT = "123456789012"
# Sentinels: if either shows up outside a secret envelope, a secret leaked.
GITHUB_TOKEN = "ghp_SENTINELtokenNEVERinPLAINtext0123456789"
ECR_PASSWORD = "ecr-SENTINEL-password-NEVER-in-plain-text"
SECRETS = (GITHUB_TOKEN, ECR_PASSWORD)
# The stack files ship placeholders the program refuses; tests stand in for the user's values.
REPO_URL = "https://github.com/octo-ml/sagemaker-batch-transform.git"
EMAIL = "ml-alerts@octo-ml.io"


def project_file() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())


def stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())


def _cli_string(value: Any) -> str:
    """A config value as the CLI hands it to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def stack_config(stack: str, *, as_shipped: bool = False) -> dict[str, str]:
    """The config the CLI would pass: Pulumi.yaml defaults overlaid by the stack file, with
    the user's own repository and address in place of the shipped placeholders (unless
    `as_shipped`), as `pulumi config set` leaves them."""
    config = {
        f"{PROJECT}:{key}": _cli_string(spec["default"])
        for key, spec in project_file()["config"].items()
        if "default" in spec
    }
    config.update({key: _cli_string(v) for key, v in stack_file(stack)["config"].items()})
    if not as_shipped:
        config[f"{PROJECT}:githubRepoUrl"] = REPO_URL
        if config.get(f"{PROJECT}:notificationEmail"):
            config[f"{PROJECT}:notificationEmail"] = EMAIL
    return config


def _digest(text: str, length: int = 7) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class AwsMocks(pulumi.runtime.Mocks):
    """Answers like AWS would: auto-names, ARNs, URLs and digests; nothing in preview."""

    def __init__(self, region: str, preview: bool) -> None:
        self.region = region
        self.preview = preview
        self.invokes: list[dict[str, Any]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.invokes.append({"token": args.token, "args": args.args, "provider": args.provider})
        region = self.region
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abc"]
            return {"names": names, "zoneIds": [f"euw1-az{i}" for i in (1, 2, 3)]}
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": ECR_PASSWORD,
                "authorizationToken": f"QVdTOg==.{ECR_PASSWORD}",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:iam::{ACCOUNT}:user/ci"
            return {"accountId": ACCOUNT, "arn": arn, "userId": "AIDAEXAMPLE"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": region, "name": region}
        return {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if self.preview:
            return "", {}  # a first preview: every computed output is unknown
        state = dict(args.inputs)
        typ, name, region = args.typ, args.name, self.region
        auto = f"{name}-{_digest(name)}"
        physical = state.get("name") or auto
        arn_base = f"arn:aws:{typ.split(':')[1].split('/')[0]}:{region}:{ACCOUNT}"
        if typ == "aws:s3/bucket:Bucket":
            bucket = state.get("bucket") or auto
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            return bucket, state
        if typ == "aws:ecr/repository:Repository":
            state.update(
                name=physical,
                arn=f"{arn_base}:repository/{physical}",
                registryId=ACCOUNT,
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{physical}",
            )
            return physical, state
        if typ == "aws:iam/role:Role":
            state.update(name=physical, arn=f"arn:aws:iam::{ACCOUNT}:role/{physical}")
            return physical, state
        if typ == "aws:kms/key:Key":
            key_id = f"{_digest(name, 8)}-1111-2222-3333-444455556666"
            state.update(keyId=key_id, arn=f"{arn_base}:key/{key_id}")
            return key_id, state
        if typ == "aws:secretsmanager/secret:Secret":
            arn = f"{arn_base}:secret:{physical}-AbCdEf"
            state.update(name=physical, arn=arn)
            return arn, state
        if typ == "aws:sagemaker/notebookInstance:NotebookInstance":
            state.update(
                name=physical,
                arn=f"{arn_base}:notebook-instance/{physical}",
                url=f"{physical}.notebook.{region}.sagemaker.aws",
            )
            return physical, state
        if typ == "aws:lambda/function:Function":
            arn = f"{arn_base}:function:{physical}"
            api = f"arn:aws:apigateway:{region}:lambda:path/2015-03-31"
            invoke = f"{api}/functions/{arn}/invocations"
            state.update(name=physical, arn=arn, invokeArn=invoke)
            return physical, state
        if typ == "aws:sqs/queue:Queue":
            url = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{physical}"
            state.update(name=physical, arn=f"{arn_base}:{physical}", url=url)
            return url, state  # the provider's id of a queue is its URL
        if typ == "aws:sns/topic:Topic":
            arn = f"{arn_base}:{physical}"
            state.update(name=physical, arn=arn)
            return arn, state
        if typ == "aws:sns/topicSubscription:TopicSubscription":
            arn = f"{state['topic']}:{_digest(name, 8)}-aaaa-bbbb-cccc-ddddeeeeffff"
            state.update(arn=arn, pendingConfirmation=state.get("protocol") == "email")
            return arn, state
        if typ == "aws:cloudwatch/eventRule:EventRule":
            state.update(name=physical, arn=f"arn:aws:events:{region}:{ACCOUNT}:rule/{physical}")
            return physical, state
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            arn = f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{physical}"
            state.update(name=physical, arn=arn)
            return physical, state
        if typ == "aws:ssm/parameter:Parameter":
            state.update(name=physical, arn=f"{arn_base}:parameter/{physical.lstrip('/')}")
            return physical, state
        if typ == "docker:index/image:Image":
            repository = str(state["imageName"]).rsplit(":", 1)[0]
            state["repoDigest"] = f"{repository}@sha256:{_digest(name, 64)}"
            return f"sha256:{_digest(name, 64)}", state
        if typ.startswith("pulumi:providers:"):
            return f"{name}-provider-id", state
        if typ.startswith("aws:"):
            state.setdefault("name", physical)
            state.setdefault("arn", f"{arn_base}:{physical}")
        return f"{name}-id", state


@dataclass
class Run:
    """What one program run declared."""

    resources: list[dict[str, Any]]
    exports: dict[str, Any]
    invokes: list[dict[str, Any]]
    stack: Any
    config: dict[str, str]

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        """Sorted by name: the engine records resources in completion order, which varies."""
        return sorted((r for r in self.resources if r["type"] == typ), key=lambda r: r["name"])

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {[r['name'] for r in found]}"
        return found[0]

    def named(self, typ: str, suffix: str) -> dict[str, Any]:
        """The one `typ` resource whose logical name is `<prefix>-<suffix>`, for types the
        stack declares several of (roles, role policies)."""
        found = [r for r in self.of_type(typ) if r["name"].endswith(f"-{suffix}")]
        assert len(found) == 1, f"expected one {typ} *-{suffix}, found {[r['name'] for r in found]}"
        return found[0]


def _plain_data(value: Any) -> Any:
    """Wire values as JSON-able data: unknowns (preview) become Pulumi's unknown sentinel,
    assets and archives `{"<class>": {...its fields}}`, e.g. `{"FileAsset": {"path": ...}}`."""
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return {type(value).__name__: _plain_data(vars(value))}
    if isinstance(value, dict):
        return {key: _plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_data(item) for item in value]
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping each registration's options and the stack outputs."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.records: list[dict[str, Any]] = []
        self.outputs_by_urn: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            registration = self.resources[response.urn]
            self.records.append(
                {
                    "type": request.type,
                    "name": request.name,
                    "urn": response.urn,
                    "parent": request.parent,
                    "custom": request.custom,
                    "provider": request.provider,
                    "protect": request.protect,
                    "delete_before_replace": request.deleteBeforeReplace,
                    "dependencies": list(request.dependencies),
                    "property_dependencies": {
                        prop: list(deps.urns) for prop, deps in request.propertyDependencies.items()
                    },
                    "inputs": _plain_data(rpc.deserialize_properties(request.object)),
                    "outputs": _plain_data(registration.state),
                }
            )
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 - gRPC method name
        self.outputs_by_urn[request.urn] = _plain_data(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)


LAST_MONITOR: list[RecordingMonitor] = []


def run_program(
    config: dict[str, str],
    *,
    stack: str = "dev",
    secret_keys: tuple[str, ...] = (),
    preview: bool = False,
) -> Run:
    """Run `infra.program.build()` once under mocks, the way the language host runs it."""
    from infra.program import build  # imported late: the mocks must be in place first

    region = config.get("aws:region", "eu-west-1")
    mocks = AwsMocks(region, preview)
    monitor = RecordingMonitor(mocks)
    LAST_MONITOR[:] = [monitor]  # lets a test see what was declared when the run raised
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys=list(secret_keys))
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi_settings.ROOT.set(None)  # run_in_stack makes its own root, as `pulumi up` does

    built: dict[str, Any] = {}

    def program() -> None:
        built["stack"] = build()

    _sync_await(run_in_stack(program))
    stack_urn = f"urn:pulumi:{stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{stack}"
    exports = monitor.outputs_by_urn.get(stack_urn, {})
    return Run(
        resources=monitor.records,
        exports=exports,
        invokes=mocks.invokes,
        stack=built.get("stack"),
        config=config,
    )


def with_token(config: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    token_key = f"{PROJECT}:githubToken"
    updated = {**config, token_key: GITHUB_TOKEN, f"{PROJECT}:githubUsername": "octo-ml"}
    return updated, (token_key,)


@cache
def variant(name: str) -> Run:
    """dev / prod: the stack files plus a (secret) GitHub token; preview / prod-preview: the
    same in preview mode; public: dev without a token and with the seed demo's opt-ins
    (any bucket, AmazonSageMakerFullAccess on the notebook)."""
    if name in ("dev", "prod", "preview", "prod-preview"):
        stack = "prod" if name.startswith("prod") else "dev"
        config, secret_keys = with_token(stack_config(stack))
        preview = name.endswith("preview")
        return run_program(config, stack=stack, secret_keys=secret_keys, preview=preview)
    if name == "public":
        config = {
            **stack_config("dev"),
            f"{PROJECT}:allowAllBuckets": "true",
            f"{PROJECT}:notebookSageMakerFullAccess": "true",
        }
        return run_program(config, stack="dev")
    raise ValueError(name)
