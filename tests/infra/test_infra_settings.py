"""Config schema, stack files and the validation messages users see for bad values."""

from __future__ import annotations

import re

import pulumi
import pytest
from infra_harness import PROJECT, REPO_URL, project_file, stack_config, stack_file

from infra.settings import DEFAULTS, Settings, SettingsError, load_settings

BASE = {"aws:region": "eu-west-1", f"{PROJECT}:githubRepoUrl": REPO_URL}


class _NoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        raise AssertionError("settings must not declare resources")

    def call(self, args):
        raise AssertionError("settings must not invoke providers")


def settings_for(
    values: dict[str, str], *, secret_keys: tuple[str, ...] = (), stack: str = "dev"
) -> Settings:
    pulumi.runtime.set_mocks(_NoMocks(), project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(dict(values), secret_keys=list(secret_keys))
    return load_settings()


def error_for(values: dict[str, str], **kwargs) -> str:
    with pytest.raises(SettingsError) as caught:
        settings_for(values, **kwargs)
    return str(caught.value)


def key(name: str) -> str:
    return f"{PROJECT}:{name}"


# --- the schema in Pulumi.yaml ----------------------------------------------------------


def test_every_project_key_is_typed_described_and_defaulted_like_the_code() -> None:
    schema = project_file()["config"]
    python_types = {"string": str, "integer": int, "boolean": bool}
    for name, spec in schema.items():  # the trigger's keys too, once they are added
        assert spec["type"] in python_types, name
        assert len(spec["description"]) > 20, name
    assert set(DEFAULTS) <= set(schema)
    for name in DEFAULTS:
        spec = schema[name]
        if name == "githubRepoUrl":
            assert "default" not in spec  # required: the CLI asks for it
            continue
        assert "default" in spec, f"{name}: without a default the CLI demands a value"
        assert spec["default"] == DEFAULTS[name], name
        assert isinstance(spec["default"], python_types[spec["type"]]), name
    assert schema["githubToken"]["secret"] is True
    assert schema["githubToken"]["default"] == ""  # empty means "no token"
    assert schema["notebookPlatformIdentifier"]["default"] == "notebook-al2023-v1"
    assert schema["allowAllBuckets"]["default"] is False


def test_project_runs_python_with_uv() -> None:
    project = project_file()
    assert project["name"] == PROJECT
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}
    assert project["description"]


# --- the stack files ----------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_file_uses_only_declared_keys_and_loads(stack: str) -> None:
    declared = set(project_file()["config"])
    config = stack_file(stack)["config"]
    own = {k.split(":", 1)[1] for k in config if k.startswith(f"{PROJECT}:")}
    assert own <= declared
    assert config["pulumi:disable-default-providers"] == ["aws"]
    assert not any("githubToken" in k for k in config)  # secrets are set per user, --secret
    settings = settings_for(stack_config(stack), stack=stack)
    assert settings.region == config["aws:region"]
    assert settings.prefix == f"{PROJECT}-{stack}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_placeholders_are_refused_until_the_user_sets_their_own(stack: str) -> None:
    """The stack files name a repository and (prod) an address that are not the user's:
    `pulumi up` must stop before cloning or subscribing them, naming the command to run."""
    message = error_for(stack_config(stack, as_shipped=True), stack=stack)
    lines = message.splitlines()
    assert lines[0] == (
        "config 'githubRepoUrl' is a placeholder (the stack file's example), not your "
        "repository (got 'https://github.com/acme-ml/sagemaker-batch-transform.git'); "
        "fix: pulumi config set "
        "githubRepoUrl https://github.com/<owner>/<repo>.git"
    )
    if stack == "prod":
        assert lines[1].startswith("config 'notificationEmail' is a placeholder")
        assert "fix: pulumi config set notificationEmail <you@your-domain>" in lines[1]
    assert len(lines) == (2 if stack == "prod" else 1)
    # The user's own values pass.
    settings_for(stack_config(stack), stack=stack)


def test_security_switches_are_off_in_dev_and_on_in_prod() -> None:
    dev = settings_for(stack_config("dev"), stack="dev")
    prod = settings_for(stack_config("prod"), stack="prod")
    for name in ("flow_logs", "access_logging", "lambda_tracing", "kms_key"):
        assert (getattr(dev, name), getattr(prod, name)) == (False, True), name
    assert not dev.notebook_full_access and not prod.notebook_full_access
    assert prod.log_retention_days == 365 and dev.log_retention_days == 90


def test_dev_is_disposable_and_prod_is_protected() -> None:
    dev = settings_for(stack_config("dev"), stack="dev")
    prod = settings_for(stack_config("prod"), stack="prod")
    assert dev.force_destroy and not dev.protect_data and not dev.kms_key
    assert dev.idle_timeout_minutes > 0
    assert not prod.force_destroy and prod.protect_data and prod.kms_key
    assert not prod.notebook_root_access
    assert prod.ecr_keep_images > dev.ecr_keep_images
    assert prod.vpc_cidr != dev.vpc_cidr
    for settings in (dev, prod):
        assert settings.notebook_platform_identifier == "notebook-al2023-v1"
        assert not settings.allow_all_buckets
        assert settings.github_token is None


def test_defaults_apply_when_only_required_keys_are_set() -> None:
    settings = settings_for(BASE)
    assert settings.github_branch == "main"
    assert settings.notebook_instance_type == "ml.t3.medium"
    assert settings.notebook_volume_size_gb == 20
    assert settings.protect_data is True and settings.force_destroy is False
    assert settings.github_token is None and settings.github_username is None
    assert settings.default_tags == {"project": PROJECT, "stack": "dev", "managed-by": "pulumi"}


def test_aws_profile_is_forwarded_when_set() -> None:
    assert settings_for(BASE).aws_profile is None
    assert settings_for({**BASE, "aws:profile": "ml-dev"}).aws_profile == "ml-dev"


def test_empty_token_means_public_repository() -> None:
    settings = settings_for({**BASE, key("githubToken"): "", key("githubUsername"): ""})
    assert settings.github_token is None


def test_secret_token_is_kept_as_a_secret_output() -> None:
    settings = settings_for(
        {**BASE, key("githubToken"): "tok", key("githubUsername"): "octo"},
        secret_keys=(key("githubToken"),),
    )
    assert isinstance(settings.github_token, pulumi.Output)
    assert settings.github_username == "octo"


# --- bad input: one line per problem, naming the key and the fix --------------------------

BAD = [
    (
        {key("githubRepoUrl"): ""},
        "config 'githubRepoUrl' is not set; fix: pulumi config set githubRepoUrl https://",
    ),
    (
        {key("githubRepoUrl"): "http://github.com/acme/repo.git"},
        "config 'githubRepoUrl' must be an https:// URL",
    ),
    (
        {key("githubRepoUrl"): "git@github.com:acme/repo.git"},
        "config 'githubRepoUrl' must be an https:// URL",
    ),
    (
        {key("githubRepoUrl"): "https://user:pw@github.com/acme/repo.git"},
        "config 'githubRepoUrl' must not carry credentials",
    ),
    ({key("vpcCidr"): "10.0.0.0/33"}, "config 'vpcCidr' must be an IPv4 CIDR block"),
    ({key("vpcCidr"): "10.0.0.1/16"}, "config 'vpcCidr' must be an IPv4 CIDR block"),
    ({key("vpcCidr"): "ten.zero/16"}, "config 'vpcCidr' must be an IPv4 CIDR block"),
    ({key("vpcCidr"): "fd00::/56"}, "config 'vpcCidr' must be an IPv4 CIDR block"),
    ({key("vpcCidr"): "10.0.0.0/8"}, "config 'vpcCidr' must have a prefix length from /16"),
    (
        {key("notebookInstanceType"): "t3.medium"},
        "config 'notebookInstanceType' must be a SageMaker instance type starting with ml.",
    ),
    (
        {key("notebookVolumeSizeGb"): "2"},
        "config 'notebookVolumeSizeGb' must be a whole number of GB from 5 to 16384 (got 2)",
    ),
    (
        {key("notebookVolumeSizeGb"): "20000"},
        "config 'notebookVolumeSizeGb' must be a whole number of GB from 5 to 16384",
    ),
    (
        {key("notebookVolumeSizeGb"): "big"},
        "config 'notebookVolumeSizeGb' must be a whole number of GB",
    ),
    (
        {key("notebookPlatformIdentifier"): "notebook-al2-v2"},
        "config 'notebookPlatformIdentifier' names an Amazon Linux 1/2 platform",
    ),
    (
        {key("notebookPlatformIdentifier"): "ubuntu"},
        "config 'notebookPlatformIdentifier' must be an Amazon Linux 2023 platform",
    ),
    ({key("codeServerVersion"): "latest"}, "config 'codeServerVersion' must be a code-server"),
    ({key("idleTimeoutMinutes"): "3"}, "config 'idleTimeoutMinutes' must be 0 (off) or at least"),
    ({key("idleTimeoutMinutes"): "-1"}, "config 'idleTimeoutMinutes' must be 0 (off) or minutes"),
    ({key("ecrKeepImages"): "0"}, "config 'ecrKeepImages' must be a whole number from 1 to 1000"),
    ({key("forceDestroy"): "yes"}, "config 'forceDestroy' must be true or false (got 'yes')"),
    ({key("githubBranch"): "bad branch"}, "config 'githubBranch' must be a git branch name"),
    ({"aws:region": ""}, "config 'aws:region' is not set; fix: pulumi config set aws:region"),
    ({"aws:region": "Ireland"}, "config 'aws:region' is not a region ('Ireland')"),
    (
        {key("githubRepoUrl"): "https://github.com/acme-ml/sagemaker-batch-transform.git"},
        "config 'githubRepoUrl' is a placeholder (the stack file's example), not your repository",
    ),
    (
        {key("githubRepoUrl"): "https://github.com/<owner>/<repo>.git"},
        "config 'githubRepoUrl' is a placeholder",
    ),
    (
        {key("notificationEmail"): "ml-alerts@acme-ml.example"},
        "config 'notificationEmail' is a placeholder (an example address), not yours",
    ),
    (
        {key("notificationEmail"): "me@example.com"},
        "config 'notificationEmail' is a placeholder",
    ),
    ({key("logRetentionDays"): "100"}, "config 'logRetentionDays' must be one of 1, 3, 5"),
    ({key("vpcFlowLogs"): "on"}, "config 'vpcFlowLogs' must be true or false (got 'on')"),
]


@pytest.mark.parametrize(("override", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_value_fails_with_one_line_naming_key_and_fix(
    override: dict[str, str], expected: str
) -> None:
    message = error_for({**BASE, **override})
    assert expected in message
    assert "\n" not in message
    config_key = re.search(r"config '([^']+)'", message).group(1)
    assert f"pulumi config set {config_key.removeprefix(f'{PROJECT}:')}" in message


def test_plaintext_token_is_refused_with_the_secret_command() -> None:
    message = error_for({**BASE, key("githubToken"): "ghp_x", key("githubUsername"): "octo"})
    assert "config 'githubToken' is stored in plain text" in message
    assert "pulumi config set --secret githubToken <token>" in message


def test_token_needs_a_username() -> None:
    message = error_for({**BASE, key("githubToken"): "ghp_x"}, secret_keys=(key("githubToken"),))
    assert message == (
        "config 'githubUsername' must be set when githubToken is set; "
        "fix: pulumi config set githubUsername <github-user>"
    )


def test_too_long_stack_name_is_refused() -> None:
    message = error_for(BASE, stack="a-very-long-stack-name-for-testing")
    assert "at most 40 characters" in message
    assert "pulumi stack init" in message


def test_every_problem_is_reported_at_once() -> None:
    message = error_for(
        {
            "aws:region": "eu-west-1",
            key("vpcCidr"): "10.0.0.0/40",
            key("notebookInstanceType"): "m5.large",
            key("notebookVolumeSizeGb"): "1",
        }
    )
    lines = message.splitlines()
    assert [line.split("'")[1] for line in lines] == [
        "githubRepoUrl",
        "notebookInstanceType",
        "notebookVolumeSizeGb",
        "vpcCidr",
    ]
    assert all("; fix: pulumi config set " in line for line in lines)


def test_settings_error_is_a_run_error_so_pulumi_prints_no_traceback() -> None:
    assert issubclass(SettingsError, pulumi.RunError)
