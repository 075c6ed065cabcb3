"""The deployed stack's outputs: from Pulumi's Automation API or a JSON file.

The rest of the cloud run receives one function, ``(stack, project_dir) -> dict``,
so tests hand it a dict and machines without the Pulumi CLI use a file written by
``pulumi stack output --json``. Whatever the source, ``StackOutputs.parse`` checks
the keys the run needs and names every missing one.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import UserError

OutputReader = Callable[[str, Path], Mapping[str, Any]]

# What every cloud run needs, and what --via-lambda adds (the trigger's outputs).
REQUIRED = ("region", "bucket_name", "image_uri", "sagemaker_role_arn", "current_model_parameter")
REQUIRED_VIA_LAMBDA = ("input_prefix", "output_prefix")
OPTIONAL = (
    *REQUIRED_VIA_LAMBDA,
    "transform_job_name_prefix",
    "kms_key_arn",
    "trigger_function_name",
    "failed_events_queue_url",
)
INSTALL_PULUMI = "https://www.pulumi.com/docs/iac/download-install/"
_SECRET = "[secret]"  # noqa: S105 - what `pulumi stack output --json` shows without --show-secrets
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


class OutputsError(UserError):
    """The stack's outputs cannot be read or lack something the run needs."""


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["no details"])[0][:300]


def read_stack_outputs(stack: str, project_dir: Path) -> dict[str, Any]:
    """The outputs of ``stack`` of the Pulumi project in ``project_dir``, as plain values.

    Uses ``LocalWorkspace.stack_outputs`` (``pulumi stack output --json --stack``), not
    ``select_stack``: selecting would change the user's current stack as a side effect.
    Every way this fails without the CLI, the stack or its outputs becomes an
    OutputsError saying what to do.
    """
    if not any((project_dir / name).is_file() for name in ("Pulumi.yaml", "Pulumi.yml")):
        raise OutputsError(
            f"{project_dir} holds no Pulumi.yaml: pass --project-dir with the directory of the "
            "Pulumi project, or --outputs-file FILE"
        )
    no_cli = (
        f"the Pulumi CLI is needed to read stack {stack!r}'s outputs and is not installed: "
        f"install it ({INSTALL_PULUMI}, e.g. `curl -fsSL https://get.pulumi.com | sh`) or, on a "
        f"machine that has it, run `pulumi stack output --json --stack {stack} > outputs.json` "
        "and pass --outputs-file outputs.json"
    )
    try:
        from pulumi import automation as auto
    except ImportError:
        raise OutputsError(
            "the Pulumi SDK is not installed in this environment (dependency group 'infra'): "
            "run the script with `uv run`, or pass --outputs-file FILE"
        ) from None
    try:
        workspace = auto.LocalWorkspace(work_dir=str(project_dir))
        outputs = workspace.stack_outputs(stack)
    except FileNotFoundError:
        raise OutputsError(no_cli) from None
    except subprocess.CalledProcessError as error:
        raise OutputsError(f"`pulumi version` failed ({error}): {no_cli}") from None
    except auto.InvalidVersionError as error:
        raise OutputsError(
            f"the installed Pulumi CLI is too old for this SDK ({error}): update it "
            f"({INSTALL_PULUMI}) or pass --outputs-file FILE"
        ) from None
    except auto.StackNotFoundError:
        raise OutputsError(
            f"stack {stack!r} does not exist in {project_dir}: create and deploy it with "
            f"`pulumi stack init {stack} && pulumi up --stack {stack}` (`pulumi stack ls` "
            "lists the stacks), or pass another --stack"
        ) from None
    except auto.CommandError as error:
        # str(CommandError) is "code: N / stdout: ... / stderr: ..."; the CLI's own
        # message is in the stderr part.
        stderr = str(error).rpartition("stderr:")[2]
        raise OutputsError(
            f"`pulumi stack output --stack {stack}` failed: {_first_error_line(stderr)} "
            "(log in with `pulumi login`, check PULUMI_CONFIG_PASSPHRASE, or pass --outputs-file)"
        ) from None
    values = {key: output.value for key, output in outputs.items()}
    if not values:
        raise OutputsError(
            f"stack {stack!r} has no outputs: deploy it first with `pulumi up --stack {stack}`"
        )
    return values


def outputs_file_reader(path: Path) -> OutputReader:
    """A reader for a file written by ``pulumi stack output --json`` (stack name ignored)."""

    def read(stack: str, project_dir: Path) -> dict[str, Any]:
        return read_outputs_file(path)

    return read


def read_outputs_file(path: Path) -> dict[str, Any]:
    """The outputs in ``path``: one JSON object, as ``pulumi stack output --json`` prints it."""
    write_it = f"write it with `pulumi stack output --json --stack <stack> > {path}`"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputsError(f"outputs file {path} does not exist: {write_it}") from None
    except OSError as error:
        raise OutputsError(f"cannot read outputs file {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise OutputsError(f"outputs file {path} is not valid JSON ({error}): {write_it}") from None
    if not isinstance(data, dict):
        raise OutputsError(f"outputs file {path} must hold a JSON object of outputs: {write_it}")
    if not data:
        raise OutputsError(
            f"outputs file {path} holds no outputs: the stack is not deployed yet "
            "(run `pulumi up`), then write the file again"
        )
    return data


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class StackOutputs:
    """The outputs the cloud run uses, checked; ``raw`` keeps everything the stack exported."""

    stack: str
    region: str
    bucket_name: str
    image_uri: str
    sagemaker_role_arn: str
    current_model_parameter: str
    input_prefix: str | None = None
    output_prefix: str | None = None
    transform_job_name_prefix: str | None = None
    kms_key_arn: str | None = None
    trigger_function_name: str | None = None
    failed_events_queue_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def account_id(self) -> str | None:
        """The account the stack lives in (from the execution role's ARN)."""
        parts = self.sagemaker_role_arn.split(":")
        return parts[4] if len(parts) > 5 and parts[4].isdigit() else None

    @property
    def image_is_pinned(self) -> bool:
        """True when the image URI names a digest (``...@sha256:<hex>``)."""
        return re.search(r"@sha256:[0-9a-f]{64}$", self.image_uri) is not None

    @classmethod
    def parse(
        cls, stack: str, values: Mapping[str, Any], *, extra: Iterable[str] = ()
    ) -> StackOutputs:
        """Check ``values`` for every key in ``REQUIRED`` and ``extra``; name what is missing."""
        needed = [*REQUIRED, *extra]
        secret = [key for key in needed if values.get(key) == _SECRET]
        if secret:
            raise OutputsError(
                f"stack {stack!r} outputs {', '.join(secret)} as [secret]: write the file with "
                "`pulumi stack output --json --show-secrets`"
            )
        missing = [key for key in needed if _string(values.get(key)) is None]
        if missing:
            purpose = (
                " (--via-lambda needs the trigger's outputs)"
                if set(missing) <= set(REQUIRED_VIA_LAMBDA)
                else ""
            )
            raise OutputsError(
                f"stack {stack!r} outputs lack {', '.join(missing)}{purpose}: the stack may "
                f"predate them; run `pulumi up --stack {stack}` and read the outputs again"
            )
        region = str(values["region"]).strip()
        if not _REGION.fullmatch(region):
            raise OutputsError(
                f"stack {stack!r} output region {region!r} is not an AWS region name "
                "(like eu-west-1): check the stack's aws:region and run `pulumi up`"
            )
        optional = {key: _string(values.get(key)) for key in OPTIONAL}
        return cls(
            stack=stack,
            region=region,
            bucket_name=str(values["bucket_name"]).strip(),
            image_uri=str(values["image_uri"]).strip(),
            sagemaker_role_arn=str(values["sagemaker_role_arn"]).strip(),
            current_model_parameter=str(values["current_model_parameter"]).strip(),
            raw=dict(values),
            **optional,
        )
