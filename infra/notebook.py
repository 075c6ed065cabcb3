"""The SageMaker notebook instance with code-server, its code repository and lifecycle scripts."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

SCRIPTS_DIR = Path(__file__).resolve().parent
ON_CREATE_SCRIPT = SCRIPTS_DIR / "install_codeserver.sh"
ON_START_SCRIPT = SCRIPTS_DIR / "setup_codeserver.sh"
# NotebookInstanceLifecycleHook.Content: base64, at most 16384 characters (API reference).
MAX_LIFECYCLE_CONTENT = 16384
CODE_SERVER_PATH = "/codeserver/"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


def instance_name(prefix: str) -> str:
    """The notebook instance's fixed name (its URL and the notebook role's scope use it)."""
    return f"{prefix}-notebook"


def render_script(path: Path, values: Mapping[str, str]) -> str:
    """The script with each `: "${NAME:=default}"` line's default replaced by `values[NAME]`.

    Values come from validated settings and may only hold characters that need no quoting,
    so the rendered line stays a plain shell assignment.
    """
    text = path.read_text(encoding="utf-8")
    for name, value in values.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise ValueError(f"{name}={value!r} is not a safe lifecycle script value")
        pattern = re.compile(rf'^: "\$\{{{name}:=[^}}]*\}}"$', re.MULTILINE)
        text, count = pattern.subn(lambda _m, n=name, v=value: f': "${{{n}:={v}}}"', text)
        if count != 1:
            raise ValueError(f"{path.name} has {count} default lines for {name}, expected 1")
    return text


def lifecycle_content(path: Path, values: Mapping[str, str]) -> str:
    """Base64 of the rendered script, checked against SageMaker's size limit."""
    content = base64.b64encode(render_script(path, values).encode("utf-8")).decode("ascii")
    if len(content) > MAX_LIFECYCLE_CONTENT:
        raise pulumi.RunError(
            f"{path.name} is {len(content)} base64 characters; SageMaker accepts at most "
            f"{MAX_LIFECYCLE_CONTENT}: shorten the script"
        )
    return content


@dataclass(frozen=True)
class NotebookArgs:
    prefix: str
    role_arn: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    repository_url: str
    branch: str
    instance_type: str
    volume_size_gb: int
    platform_identifier: str
    root_access: bool
    code_server_version: str
    idle_timeout_minutes: int
    secret_arn: pulumi.Input[str] | None = None
    kms_key_arn: pulumi.Input[str] | None = None
    # Resources that must exist before the instance starts: the role's policies (its
    # lifecycle scripts and git clone run with them) and the secret's value.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Notebook(pulumi.ComponentResource):
    """Notebook instance in the first subnet, IMDSv2 only, the git repository as default.

    Direct internet access stays enabled: the instance clones the repository from GitHub
    and the lifecycle scripts download code-server, uv and Python packages; the VPC has
    no NAT gateway to provide that otherwise. Inbound traffic is still impossible: the
    security group has no ingress rule, and users reach Jupyter and code-server only
    through SageMaker's authenticated proxy.
    """

    instance_name: pulumi.Output[str]
    notebook_url: pulumi.Output[str]
    code_server_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: NotebookArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Notebook", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Fixed names (not auto-named) so the notebook's URL is predictable; replacing
        # them therefore deletes the old one first.
        repository = aws.sagemaker.CodeRepository(
            f"{args.prefix}-repo",
            code_repository_name=f"{args.prefix}-repo",
            git_config=aws.sagemaker.CodeRepositoryGitConfigArgs(
                repository_url=args.repository_url,
                branch=args.branch,
                secret_arn=args.secret_arn,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on), delete_before_replace=True
            ),
        )
        lifecycle = aws.sagemaker.NotebookInstanceLifecycleConfiguration(
            f"{args.prefix}-codeserver",
            on_create=lifecycle_content(
                ON_CREATE_SCRIPT, {"CODE_SERVER_VERSION": args.code_server_version}
            ),
            on_start=lifecycle_content(
                ON_START_SCRIPT, {"IDLE_TIMEOUT_MINUTES": str(args.idle_timeout_minutes)}
            ),
            opts=child,
        )
        instance = aws.sagemaker.NotebookInstance(
            f"{args.prefix}-notebook",
            name=instance_name(args.prefix),
            role_arn=args.role_arn,
            instance_type=args.instance_type,
            volume_size=args.volume_size_gb,
            platform_identifier=args.platform_identifier,
            root_access="Enabled" if args.root_access else "Disabled",
            subnet_id=args.subnet_id,
            security_groups=[args.security_group_id],
            direct_internet_access="Enabled",
            instance_metadata_service_configuration=(
                aws.sagemaker.NotebookInstanceInstanceMetadataServiceConfigurationArgs(
                    minimum_instance_metadata_service_version="2"
                )
            ),
            default_code_repository=repository.code_repository_name,
            lifecycle_config_name=lifecycle.name,
            kms_key_id=args.kms_key_arn,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on), delete_before_replace=True
            ),
        )

        # `url` is the instance's host name, e.g. <name>.notebook.<region>.sagemaker.aws.
        base = instance.url.apply(lambda host: f"https://{host}")
        self.instance_name = instance.name
        self.notebook_url = base.apply(lambda url: f"{url}/lab")
        self.code_server_url = base.apply(lambda url: f"{url}{CODE_SERVER_PATH}")
        self.register_outputs(
            {
                "instance_name": self.instance_name,
                "notebook_url": self.notebook_url,
                "code_server_url": self.code_server_url,
            }
        )
