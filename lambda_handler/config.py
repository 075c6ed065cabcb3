"""Job parameters, read from the function's environment and validated.

The stack writes these variables from its config (``infra/trigger.py`` builds them
with :meth:`Settings.to_env`, after the same validation, so a bad value fails at
``pulumi up`` and not at the first upload). Limits are SageMaker's, from the
CreateTransformJob API reference: MaxPayloadInMB 0-100 (MiB), MaxConcurrentTransforms
x MaxPayloadInMB <= 100, BatchStrategy MultiRecord needs a SplitType, InvocationsTimeout
1-3600 s, InvocationsMaxRetries 0-3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from lambda_handler import naming

__all__ = ["ENV_NAMES", "ConfigError", "Settings"]

SPLIT_TYPES = ("None", "Line", "RecordIO", "TFRecord")
BATCH_STRATEGIES = ("MultiRecord", "SingleRecord")
ASSEMBLE_WITH = ("None", "Line")


class ConfigError(ValueError):
    """The function's environment does not describe a usable job (a deployment problem)."""


# field name -> environment variable
ENV_NAMES: dict[str, str] = {
    "job_name_prefix": "TRIGGER_JOB_NAME_PREFIX",
    "input_prefix": "TRIGGER_INPUT_PREFIX",
    "input_suffix": "TRIGGER_INPUT_SUFFIX",
    "output_prefix": "TRIGGER_OUTPUT_PREFIX",
    "model_parameter": "TRIGGER_MODEL_PARAMETER",
    "instance_type": "TRANSFORM_INSTANCE_TYPE",
    "instance_count": "TRANSFORM_INSTANCE_COUNT",
    "content_type": "TRANSFORM_CONTENT_TYPE",
    "split_type": "TRANSFORM_SPLIT_TYPE",
    "batch_strategy": "TRANSFORM_BATCH_STRATEGY",
    "max_payload_mb": "TRANSFORM_MAX_PAYLOAD_MB",
    "max_concurrent_transforms": "TRANSFORM_MAX_CONCURRENT_TRANSFORMS",
    "assemble_with": "TRANSFORM_ASSEMBLE_WITH",
    "accept": "TRANSFORM_ACCEPT",
    "output_kms_key": "TRANSFORM_OUTPUT_KMS_KEY",
    "volume_kms_key": "TRANSFORM_VOLUME_KMS_KEY",
    "invocations_timeout_seconds": "TRANSFORM_INVOCATIONS_TIMEOUT_SECONDS",
    "invocations_max_retries": "TRANSFORM_INVOCATIONS_MAX_RETRIES",
}


_INT_FIELDS = frozenset(
    {
        "instance_count",
        "max_payload_mb",
        "max_concurrent_transforms",
        "invocations_timeout_seconds",
        "invocations_max_retries",
    }
)
_OPTIONAL_FIELDS = frozenset({"invocations_timeout_seconds", "invocations_max_retries"})


class Settings(NamedTuple):
    """Everything a transform job started by the trigger needs, apart from model and object.

    ``model_parameter`` is the SSM parameter naming the current SageMaker Model
    ("" means every event must name its model). ``max_concurrent_transforms`` 0 and
    ``invocations_*`` None leave the value to SageMaker (or the container's
    ``/execution-parameters``). A NamedTuple (immutable, ``_replace``) rather than a
    dataclass: defining it costs a fraction of a millisecond at cold start.
    """

    job_name_prefix: str
    input_prefix: str
    output_prefix: str
    input_suffix: str = ".csv"
    model_parameter: str = ""
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    content_type: str = "text/csv"
    split_type: str = "Line"
    batch_strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 0
    assemble_with: str = "Line"
    accept: str = "text/csv"
    output_kms_key: str = ""
    volume_kms_key: str = ""  # TransformResources.VolumeKmsKeyId (not for instance storage)
    invocations_timeout_seconds: int | None = None
    invocations_max_retries: int | None = None

    def problems(self) -> list[str]:
        """Every reason this configuration would be rejected (empty when it is fine)."""
        out: list[str] = []
        env = ENV_NAMES
        if len(self.job_name_prefix) > naming.MAX_PREFIX_LENGTH or not self.job_name_prefix:
            out.append(f"{env['job_name_prefix']} must be 1-{naming.MAX_PREFIX_LENGTH} characters")
        else:
            try:
                naming.job_name(self.job_name_prefix, "b", "k")
            except ValueError as exc:
                out.append(f"{env['job_name_prefix']}: {exc}")
        for field in ("input_prefix", "output_prefix"):
            value = getattr(self, field)
            if not value or not value.endswith("/") or value.startswith("/"):
                out.append(
                    f"{env[field]}={value!r} must be a key prefix like 'transform/input/' "
                    "(not empty, no leading '/', ending in '/')"
                )
        if (
            self.input_prefix
            and self.output_prefix
            and (
                self.output_prefix.startswith(self.input_prefix)
                or self.input_prefix.startswith(self.output_prefix)
            )
        ):
            out.append(
                f"{env['input_prefix']}={self.input_prefix!r} and "
                f"{env['output_prefix']}={self.output_prefix!r} overlap: results written "
                "under the output prefix would trigger new jobs"
            )
        if not self.instance_type.startswith("ml."):
            out.append(f"{env['instance_type']}={self.instance_type!r} must be an ml.* type")
        if self.instance_count < 1:
            out.append(f"{env['instance_count']} must be at least 1")
        if self.split_type not in SPLIT_TYPES:
            out.append(f"{env['split_type']} must be one of {', '.join(SPLIT_TYPES)}")
        if self.batch_strategy not in BATCH_STRATEGIES:
            out.append(f"{env['batch_strategy']} must be one of {', '.join(BATCH_STRATEGIES)}")
        elif self.batch_strategy == "MultiRecord" and self.split_type == "None":
            out.append(
                f"{env['batch_strategy']}=MultiRecord needs a split type "
                f"({env['split_type']}=Line for CSV)"
            )
        if self.assemble_with not in ASSEMBLE_WITH:
            out.append(f"{env['assemble_with']} must be one of {', '.join(ASSEMBLE_WITH)}")
        elif (
            self.content_type.split(";")[0].strip().lower() == "text/csv"
            and self.split_type == "Line"
            and self.assemble_with != "Line"
        ):
            out.append(
                f"CSV split by line needs {env['assemble_with']}=Line, or the output rows "
                "run together"
            )
        if not 0 <= self.max_payload_mb <= 100:
            out.append(f"{env['max_payload_mb']} must be 0-100 (MiB)")
        if self.max_concurrent_transforms < 0:
            out.append(f"{env['max_concurrent_transforms']} must be 0 (unset) or more")
        elif self.max_concurrent_transforms * self.max_payload_mb > 100:
            out.append(
                f"{env['max_concurrent_transforms']} x {env['max_payload_mb']} must be <= 100 "
                f"(is {self.max_concurrent_transforms} x {self.max_payload_mb})"
            )
        if not self.content_type or not self.accept:
            out.append(f"{env['content_type']} and {env['accept']} must not be empty")
        timeout = self.invocations_timeout_seconds
        if timeout is not None and not 1 <= timeout <= 3600:
            out.append(f"{env['invocations_timeout_seconds']} must be 1-3600")
        retries = self.invocations_max_retries
        if retries is not None and not 0 <= retries <= 3:
            out.append(f"{env['invocations_max_retries']} must be 0-3")
        return out

    def validate(self) -> Settings:
        """Return self, or raise ConfigError naming every bad value on one line."""
        problems = self.problems()
        if problems:
            raise ConfigError("invalid trigger configuration: " + "; ".join(problems))
        return self

    def to_env(self) -> dict[str, str]:
        """The environment variables that :meth:`from_env` reads back into these settings."""
        return {
            ENV_NAMES[name]: str(value)
            for name, value in self._asdict().items()
            if value is not None
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate the settings; raise ConfigError on any bad or missing value."""
        kwargs: dict[str, object] = {}
        problems: list[str] = []
        for field in cls._fields:
            name = ENV_NAMES[field]
            raw = environ.get(name)
            if raw is None:
                if field not in cls._field_defaults:
                    problems.append(f"{name} is not set")
                continue
            raw = raw.strip()
            if field in _INT_FIELDS:
                if raw == "" and field in _OPTIONAL_FIELDS:
                    continue
                try:
                    kwargs[field] = int(raw)
                except ValueError:
                    problems.append(f"{name}={raw!r} is not a whole number")
            else:
                kwargs[field] = raw
        if problems:
            raise ConfigError("invalid trigger configuration: " + "; ".join(problems))
        return cls(**kwargs).validate()  # type: ignore[arg-type]
