"""The trigger's stack config: typed, validated with the handler's own checks.

`load_trigger_settings()` reads the `trigger*` / `transform*` / `notificationEmail` keys
(see `CONFIG_KEYS`) before any resource is declared; the job parameters are validated with
`lambda_handler.config.Settings`, so a value the function would refuse fails `pulumi up`
instead of the first upload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.settings import LOG_RETENTION_DAYS
from lambda_handler import naming
from lambda_handler.config import ENV_NAMES, Settings

# S3 notification filters take URL-encoded values; keeping prefixes to these characters
# means the configured string is exactly what S3 compares.
_SAFE_KEY_PART = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class TriggerSettings:
    """Plain, validated values from the stack's config (see `CONFIG_KEYS`)."""

    input_prefix: str = "transform/input/"
    output_prefix: str = "transform/output/"
    input_suffix: str = ".csv"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    content_type: str = "text/csv"
    split_type: str = "Line"
    batch_strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 0
    assemble_with: str = "Line"
    accept: str = "text/csv"
    timeout_seconds: int = 60
    memory_mb: int = 256
    log_retention_days: int = 30
    reserved_concurrency: int = -1
    max_retry_attempts: int = 2
    max_event_age_seconds: int = 3600
    notification_email: str = ""

    def job_settings(self, job_name_prefix: str, model_parameter: str) -> Settings:
        """The handler's view of these values (what its environment will hold)."""
        return Settings(
            job_name_prefix=job_name_prefix,
            input_prefix=self.input_prefix,
            output_prefix=self.output_prefix,
            input_suffix=self.input_suffix,
            model_parameter=model_parameter,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            content_type=self.content_type,
            split_type=self.split_type,
            batch_strategy=self.batch_strategy,
            max_payload_mb=self.max_payload_mb,
            max_concurrent_transforms=self.max_concurrent_transforms,
            assemble_with=self.assemble_with,
            accept=self.accept,
        )

    def problems(self, names: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """(field, sentence) for every value Lambda, S3 or SageMaker would refuse.

        `names` maps fields to the names the user knows (config keys by default), so
        the sentences speak of `triggerMemoryMb`, not of an environment variable.
        """
        names = names or CONFIG_KEYS
        out: list[tuple[str, str]] = []

        def bad(name: str, problem: str) -> None:
            out.append((name, f"{names[name]} {problem} (got {getattr(self, name)!r})"))

        for name in ("input_prefix", "output_prefix", "input_suffix"):
            if not _SAFE_KEY_PART.fullmatch(getattr(self, name)):
                bad(name, "may use only letters, digits and !_.*'()/- (S3 filter rules)")
        if not 1 <= self.timeout_seconds <= 900:
            bad("timeout_seconds", "must be 1-900 seconds (Lambda's limit)")
        if not 128 <= self.memory_mb <= 10240:
            bad("memory_mb", "must be 128-10240 MB (Lambda's limit)")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            bad("log_retention_days", f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        if self.reserved_concurrency != -1 and self.reserved_concurrency < 1:
            bad("reserved_concurrency", "must be -1 (no reservation) or at least 1")
        if not 0 <= self.max_retry_attempts <= 2:
            bad("max_retry_attempts", "must be 0-2 (Lambda's asynchronous retries)")
        if not 60 <= self.max_event_age_seconds <= 21600:
            bad("max_event_age_seconds", "must be 60-21600 seconds")
        if self.notification_email and not _EMAIL.fullmatch(self.notification_email):
            bad("notification_email", "must be an email address or empty")
        # The job parameters: exactly the handler's own checks, in the user's names.
        job = self.job_settings(naming.stack_prefix("project", "stack"), "/parameter")
        ours = {f: v for f, v in ENV_NAMES.items() if f in names}
        defaults = TriggerSettings()
        for problem in job.problems():
            # The fields named, in the order the sentence names them; the one to fix is the
            # first that was changed from its default.
            mentioned = sorted(
                (f for f, variable in ours.items() if variable in problem),
                key=lambda f: problem.index(ours[f]),
            )
            for f in mentioned:
                problem = problem.replace(ours[f], names[f])
            changed = [f for f in mentioned if getattr(self, f) != getattr(defaults, f)]
            out.append(((changed or mentioned or ["input_prefix"])[0], problem))
        return out


# TriggerSettings field -> project config key (Pulumi.yaml `config:` schema).
CONFIG_KEYS: dict[str, str] = {
    "input_prefix": "triggerInputPrefix",
    "output_prefix": "triggerOutputPrefix",
    "input_suffix": "triggerInputSuffix",
    "instance_type": "transformInstanceType",
    "instance_count": "transformInstanceCount",
    "content_type": "transformContentType",
    "split_type": "transformSplitType",
    "batch_strategy": "transformBatchStrategy",
    "max_payload_mb": "transformMaxPayloadMb",
    "max_concurrent_transforms": "transformMaxConcurrentTransforms",
    "assemble_with": "transformAssembleWith",
    "accept": "transformAccept",
    "timeout_seconds": "triggerTimeoutSeconds",
    "memory_mb": "triggerMemoryMb",
    "log_retention_days": "triggerLogRetentionDays",
    "reserved_concurrency": "triggerReservedConcurrency",
    "max_retry_attempts": "triggerMaxRetryAttempts",
    "max_event_age_seconds": "triggerMaxEventAgeSeconds",
    "notification_email": "notificationEmail",
}


class TriggerConfigError(pulumi.RunError):
    """Bad trigger configuration; a RunError, so Pulumi prints one message, no traceback."""


def load_trigger_settings(config: pulumi.Config | None = None) -> TriggerSettings:
    """Read the trigger's keys from the stack config; raise listing every bad one.

    Call it next to the program's other settings, before any resource is declared.
    Unset keys take the `TriggerSettings` defaults (the same as Pulumi.yaml's).
    """
    config = config or pulumi.Config()
    defaults = TriggerSettings()
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, key in CONFIG_KEYS.items():
        default = getattr(defaults, name)
        raw = config.get(key)
        if raw is None or (raw.strip() == "" and not isinstance(default, str)):
            continue
        if isinstance(default, int):
            try:
                values[name] = int(raw.strip())
            except ValueError:
                errors.append(
                    f"config {key} must be a whole number (got {raw!r}); "
                    f"fix: pulumi config set {key} {default}"
                )
        else:
            values[name] = raw.strip()
    settings = TriggerSettings(**values)
    for name, problem in settings.problems():
        key = CONFIG_KEYS[name]
        example = getattr(defaults, name)
        errors.append(
            f"config {problem}; fix: pulumi config set {key} "
            f"{example if example != '' else '<value>'}"
        )
    if errors:
        raise TriggerConfigError("\n".join(dict.fromkeys(errors)))
    return settings


# AWS limits on the physical names this component sets (Lambda function and EventBridge
# rule 64, SQS queue 80, SNS topic 256); IAM role names get Pulumi's 8-char suffix.
NAME_LIMITS = {"function": 64, "queue": 80, "topic": 256, "rule": 64, "role": 64 - 8}


def physical_names(prefix: str) -> dict[str, str]:
    """The names the component gives its resources, from the stack's resource prefix."""
    return {
        "function": f"{prefix}-trigger",
        "queue": f"{prefix}-trigger-failed",
        "topic": f"{prefix}-transform-jobs",
        "rule": f"{prefix}-transform-finished",  # the longer of the two rule names
        "role": f"{prefix}-trigger",
    }
