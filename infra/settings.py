"""Typed, validated stack settings read from Pulumi config.

Every value the program uses comes through `load_settings()`, which checks all keys before a
single resource is declared. A bad value stops `pulumi up`/`preview` with one line per
problem naming the key and the `pulumi config set` command that fixes it, instead of a
half-declared stack or a provider error minutes later.

The defaults below mirror the `config:` schema in Pulumi.yaml (the CLI applies those before
the program runs; tests assert the two agree).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import pulumi

T = TypeVar("T")

# SageMaker NotebookInstance limits (API reference, CreateNotebookInstance: VolumeSizeInGB 5-16384).
MIN_VOLUME_GB = 5
MAX_VOLUME_GB = 16384
# The auto-stop timer fires every 5 minutes, so shorter timeouts cannot be honoured.
MIN_IDLE_MINUTES = 5
MAX_IDLE_MINUTES = 7 * 24 * 60
# Two subnets are carved out of the VPC as quarters; AWS allows VPCs from /16 to /28 and
# subnets no smaller than /28, so the VPC may be at most a /26.
MIN_VPC_PREFIX = 16
MAX_VPC_PREFIX = 26
# Longest `<project>-<stack>` prefix that keeps every generated name within AWS limits
# (63 for buckets and notebook instances, 64 for IAM roles, after Pulumi's 8-char suffix).
MAX_PREFIX_LENGTH = 40

INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
PLATFORM_RE = re.compile(r"^notebook-al2023-v\d+$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,255}$")
SECRET_KEY = "githubToken"  # noqa: S105 - the config key's name, not its value
# The stack files ship placeholders (a GitHub owner and a mail domain that are not yours);
# domains reserved for documentation (RFC 2606 / RFC 6761) can never be real either.
PLACEHOLDER_OWNERS = ("acme-ml",)
RESERVED_DOMAINS = ("example", "example.com", "example.net", "example.org", "invalid", "test")
# CloudWatch Logs PutRetentionPolicy accepts only these day counts; the log bucket's
# expiry uses the same list so one setting reads the same everywhere.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


class SettingsError(pulumi.RunError):
    """Bad stack configuration. A RunError, so Pulumi prints the message without a traceback."""


@dataclass(frozen=True)
class Settings:
    """Everything the program reads from the stack's config, already validated."""

    project: str
    stack: str
    region: str
    github_repo_url: str
    github_branch: str = "main"
    github_username: str | None = None
    # A Pulumi secret Output, never a plain string: it must stay encrypted in the state.
    github_token: pulumi.Output[str] | None = None
    notebook_instance_type: str = "ml.t3.medium"
    notebook_volume_size_gb: int = 20
    notebook_platform_identifier: str = "notebook-al2023-v1"
    notebook_root_access: bool = True
    code_server_version: str = "4.105.1"
    idle_timeout_minutes: int = 60
    vpc_cidr: str = "10.0.0.0/16"
    force_destroy: bool = False
    protect_data: bool = True
    ecr_keep_images: int = 10
    kms_key: bool = False
    allow_all_buckets: bool = False
    # Security controls (issue 14): off by default, on in Pulumi.prod.yaml.
    notebook_full_access: bool = False
    flow_logs: bool = False
    access_logging: bool = False
    log_retention_days: int = 90
    lambda_tracing: bool = False
    # `aws:profile`, forwarded to the explicit provider (which, unlike the default one,
    # does not read the `aws:` config namespace by itself).
    aws_profile: str | None = None

    @property
    def prefix(self) -> str:
        """`<project>-<stack>`: the start of every resource name, so names say whose they are."""
        return resource_prefix(self.project, self.stack)

    @property
    def partition(self) -> str:
        """The AWS partition of the region, for ARNs of AWS-managed policies."""
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def default_tags(self) -> dict[str, str]:
        """Tags the AWS provider puts on every taggable resource."""
        return {"project": self.project, "stack": self.stack, "managed-by": "pulumi"}


def resource_prefix(project: str, stack: str) -> str:
    """Lower-case, hyphen-only form of `<project>-<stack>` valid in every AWS name we use."""
    raw = f"{project}-{stack}".lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")


# Schema of the project's config keys: default (None = no default) used when a key is unset.
DEFAULTS: dict[str, object] = {
    "githubRepoUrl": None,
    "githubBranch": Settings.github_branch,
    # Optional keys default to "" (= unset): the CLI demands a value for any key without one.
    "githubUsername": "",
    SECRET_KEY: "",
    "notebookInstanceType": Settings.notebook_instance_type,
    "notebookVolumeSizeGb": Settings.notebook_volume_size_gb,
    "notebookPlatformIdentifier": Settings.notebook_platform_identifier,
    "notebookRootAccess": Settings.notebook_root_access,
    "codeServerVersion": Settings.code_server_version,
    "idleTimeoutMinutes": Settings.idle_timeout_minutes,
    "vpcCidr": Settings.vpc_cidr,
    "forceDestroy": Settings.force_destroy,
    "protectData": Settings.protect_data,
    "ecrKeepImages": Settings.ecr_keep_images,
    "kmsKey": Settings.kms_key,
    "allowAllBuckets": Settings.allow_all_buckets,
    "notebookSageMakerFullAccess": Settings.notebook_full_access,
    "vpcFlowLogs": Settings.flow_logs,
    "s3AccessLogging": Settings.access_logging,
    "logRetentionDays": Settings.log_retention_days,
    "lambdaTracing": Settings.lambda_tracing,
}


class _Reader:
    """Reads raw config strings and collects every problem instead of stopping at the first."""

    def __init__(self, config: pulumi.Config) -> None:
        self.config = config
        self.errors: list[str] = []

    def fail(self, key: str, problem: str, example: str) -> None:
        self.errors.append(f"config '{key}' {problem}; fix: pulumi config set {key} {example}")

    def raw(self, key: str) -> str | None:
        value = self.config.get(key)
        return None if value is None or value.strip() == "" else value.strip()

    def string(
        self, key: str, example: str, check: Callable[[str], str | None] | None = None
    ) -> str:
        value = self.raw(key)
        default = DEFAULTS[key]
        if value is None:
            if default is None:
                self.fail(key, "is not set", example)
                return ""
            return str(default)
        problem = check(value) if check else None
        if problem:
            self.fail(key, f"{problem} (got {value!r})", example)
        return value

    def parsed(self, key: str, example: str, parse: Callable[[str], T], expect: str) -> T:
        default: T = DEFAULTS[key]  # type: ignore[assignment]
        value = self.raw(key)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.fail(key, f"must be {expect} (got {value!r})", example)
            return default

    def boolean(self, key: str) -> bool:
        return self.parsed(key, "true", _parse_bool, "true or false")

    def integer(self, key: str, example: str, low: int, high: int, expect: str) -> int:
        value = self.parsed(key, example, int, expect)
        if not low <= value <= high:
            self.fail(key, f"must be {expect} (got {value})", example)
        return value


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(value)


def _check_https_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        return "must be an https:// URL of a git repository"
    if parsed.username or parsed.password:
        return "must not carry credentials; put the token in githubToken (--secret)"
    return None


def _reserved_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith(f".{d}") for d in RESERVED_DOMAINS)


def _check_repo_url(value: str) -> str | None:
    problem = _check_https_url(value)
    if problem:
        return problem
    parsed = urlparse(value)
    owner = parsed.path.strip("/").split("/")[0].lower()
    if owner in PLACEHOLDER_OWNERS or "<" in value or _reserved_host(parsed.hostname or ""):
        return "is a placeholder (the stack file's example), not your repository"
    return None


def placeholder_email(value: str) -> bool:
    """True for the shipped example address (or any address at a reserved domain)."""
    domain = value.rpartition("@")[2]
    return "<" in value or _reserved_host(domain) or domain.split(".")[0] in PLACEHOLDER_OWNERS


def _check_cidr(value: str) -> str | None:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return "must be an IPv4 CIDR block such as 10.0.0.0/16, with no host bits set"
    if network.version != 4:
        return "must be an IPv4 CIDR block"
    if not MIN_VPC_PREFIX <= network.prefixlen <= MAX_VPC_PREFIX:
        return f"must have a prefix length from /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}"
    return None


def _check_pattern(pattern: re.Pattern[str], expect: str) -> Callable[[str], str | None]:
    return lambda value: None if pattern.fullmatch(value) else f"must be {expect}"


def _check_platform(value: str) -> str | None:
    if PLATFORM_RE.fullmatch(value):
        return None
    if value.startswith(("notebook-al1-", "notebook-al2-")):
        return (
            "names an Amazon Linux 1/2 platform, which can no longer be created or restarted "
            "(AWS doc nbi-al2); the lifecycle scripts target Amazon Linux 2023"
        )
    return "must be an Amazon Linux 2023 platform such as notebook-al2023-v1"


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack's config; raise SettingsError listing every problem."""
    project, stack = pulumi.get_project(), pulumi.get_stack()
    config = config or pulumi.Config()
    read = _Reader(config)

    aws_config = pulumi.Config("aws")
    region = aws_config.get("region") or ""
    if not REGION_RE.fullmatch(region):
        read.errors.append(
            f"config 'aws:region' {'is not set' if not region else f'is not a region ({region!r})'}"
            "; fix: pulumi config set aws:region eu-west-1"
        )

    repo_url = read.string(
        "githubRepoUrl", "https://github.com/<owner>/<repo>.git", _check_repo_url
    )
    email = read.raw("notificationEmail")
    if email is not None and placeholder_email(email):
        read.fail(
            "notificationEmail",
            f"is a placeholder (an example address), not yours (got {email!r})",
            "<you@your-domain> (or pulumi config rm notificationEmail)",
        )
    branch = read.string("githubBranch", "main", _check_pattern(BRANCH_RE, "a git branch name"))
    username = read.raw("githubUsername")
    if username is not None and not USERNAME_RE.fullmatch(username):
        read.fail("githubUsername", f"must be a GitHub user name (got {username!r})", "<user>")

    # An empty value (the schema's default) means a public repository: no secret at all.
    token = config.get_secret(SECRET_KEY) if read.raw(SECRET_KEY) is not None else None
    full_key = f"{project}:{SECRET_KEY}"
    if token is not None:
        if not pulumi.runtime.is_config_secret(full_key):
            read.errors.append(
                f"config '{SECRET_KEY}' is stored in plain text in the stack file; fix: "
                f"pulumi config rm {SECRET_KEY} && pulumi config set --secret {SECRET_KEY} <token>"
            )
        if username is None:
            read.fail("githubUsername", "must be set when githubToken is set", "<github-user>")

    instance_type = read.string(
        "notebookInstanceType",
        "ml.t3.medium",
        _check_pattern(INSTANCE_TYPE_RE, "a SageMaker instance type starting with ml."),
    )
    volume = read.integer(
        "notebookVolumeSizeGb",
        "20",
        MIN_VOLUME_GB,
        MAX_VOLUME_GB,
        f"a whole number of GB from {MIN_VOLUME_GB} to {MAX_VOLUME_GB}",
    )
    platform = read.string("notebookPlatformIdentifier", "notebook-al2023-v1", _check_platform)
    version = read.string(
        "codeServerVersion",
        Settings.code_server_version,
        _check_pattern(VERSION_RE, "a code-server release version such as 4.105.1"),
    )
    idle = read.integer(
        "idleTimeoutMinutes",
        "60",
        0,
        MAX_IDLE_MINUTES,
        f"0 (off) or minutes from {MIN_IDLE_MINUTES} to {MAX_IDLE_MINUTES}",
    )
    if 0 < idle < MIN_IDLE_MINUTES:
        read.fail(
            "idleTimeoutMinutes",
            f"must be 0 (off) or at least {MIN_IDLE_MINUTES} minutes (got {idle})",
            "60",
        )
    cidr = read.string("vpcCidr", "10.0.0.0/16", _check_cidr)
    keep = read.integer("ecrKeepImages", "10", 1, 1000, "a whole number from 1 to 1000")
    retention = read.integer(
        "logRetentionDays", "90", 1, max(LOG_RETENTION_DAYS), "a number of days"
    )
    if 1 <= retention <= max(LOG_RETENTION_DAYS) and retention not in LOG_RETENTION_DAYS:
        read.fail(
            "logRetentionDays",
            f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} (got {retention})",
            "90",
        )

    prefix = resource_prefix(project, stack)
    if len(prefix) > MAX_PREFIX_LENGTH or not prefix[:1].isalpha():
        read.errors.append(
            f"stack name '{stack}' gives the resource prefix {prefix!r}, which must start with a "
            f"letter and be at most {MAX_PREFIX_LENGTH} characters; fix: pulumi stack init "
            "<shorter-name>"
        )

    settings = Settings(
        project=project,
        stack=stack,
        region=region,
        github_repo_url=repo_url,
        github_branch=branch,
        github_username=username,
        github_token=token,
        notebook_instance_type=instance_type,
        notebook_volume_size_gb=volume,
        notebook_platform_identifier=platform,
        notebook_root_access=read.boolean("notebookRootAccess"),
        code_server_version=version,
        idle_timeout_minutes=idle,
        vpc_cidr=cidr,
        force_destroy=read.boolean("forceDestroy"),
        protect_data=read.boolean("protectData"),
        ecr_keep_images=keep,
        kms_key=read.boolean("kmsKey"),
        allow_all_buckets=read.boolean("allowAllBuckets"),
        notebook_full_access=read.boolean("notebookSageMakerFullAccess"),
        flow_logs=read.boolean("vpcFlowLogs"),
        access_logging=read.boolean("s3AccessLogging"),
        log_retention_days=retention,
        lambda_tracing=read.boolean("lambdaTracing"),
        aws_profile=aws_config.get("profile") or None,
    )
    if read.errors:
        raise SettingsError("\n".join(read.errors))
    return settings
