"""Batch Transform job parameters, named and validated as CreateTransformJob names them.

``TransformJobParameters`` holds what a job *sets* (``None`` = not set, exactly as an
absent API field); ``resolve`` combines it with the container's
``GET /execution-parameters`` answer the way SageMaker does: values set on the job
win, then the container's, then the documented defaults (MaxConcurrentTransforms 1,
BatchStrategy MultiRecord, MaxPayloadInMB 6). Numbers and limits come from the
CreateTransformJob / ModelClientConfig API reference:

- MaxPayloadInMB: 0-100, in MiB (6 MB = 6,291,456 bytes); 0 asks for HTTP chunked
  streaming, which only some built-in algorithms support and this runner does not;
- MaxConcurrentTransforms: 0 or unset lets the container decide;
  MaxConcurrentTransforms x MaxPayloadInMB must not exceed 100;
- InvocationsTimeoutInSeconds 1-3600 (default 600), InvocationsMaxRetries 0-3
  (default 3);
- SplitType None | Line | RecordIO | TFRecord (only None and Line make sense for the
  text formats served here), AssembleWith None | Line, JoinSource None | Input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.batch.jsonpath import RowFilter, parse_filter
from model.errors import UserError

MIB = 1024 * 1024
MAX_PAYLOAD_LIMIT_MB = 100
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_MAX_CONCURRENT_TRANSFORMS = 1
DEFAULT_BATCH_STRATEGY = "MultiRecord"

_BATCH_STRATEGIES = {"multirecord": "MultiRecord", "singlerecord": "SingleRecord"}
_SPLIT_TYPES = {"line": "Line", "none": "None"}
_UNSUPPORTED_SPLIT_TYPES = {"recordio": "RecordIO", "tfrecord": "TFRecord"}
_ASSEMBLE_WITH = {"line": "Line", "none": "None"}
_JOIN_SOURCES = {"input": "Input", "none": "None"}
LINE_MEDIA_TYPES = ("text/csv", "application/jsonlines", "application/x-jsonlines")
# Whole-file formats: one file per request (SplitType None), binary both ways.
BINARY_MEDIA_TYPES = {"application/x-parquet": "Parquet", "application/x-npy": "NPY"}


class ParameterError(UserError):
    """A job parameter SageMaker would reject, or one the local runner cannot honour."""


def _normalise(value: str, choices: dict[str, str], name: str) -> str:
    key = value.replace("_", "").replace("-", "").lower()
    if key in choices:
        return choices[key]
    allowed = " | ".join(sorted(set(choices.values())))
    raise ParameterError(f"{name} {value!r} is not valid; use {allowed}")


def media_type(content_type: str | None) -> str | None:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (the part formats are decided by)."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class TransformJobParameters:
    """What a CreateTransformJob request sets; ``None`` means "not set on the job".

    Field names are SageMaker's own, so a job spec reads the same here and in boto3.
    """

    BatchStrategy: str | None = None
    MaxPayloadInMB: int | None = None
    MaxConcurrentTransforms: int | None = None
    SplitType: str = "Line"
    AssembleWith: str = "Line"
    ContentType: str = "text/csv"
    Accept: str | None = None
    InvocationsTimeoutInSeconds: int = 600
    InvocationsMaxRetries: int = 3
    InputFilter: str | None = None
    OutputFilter: str | None = None
    JoinSource: str = "None"
    Environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Normalise spellings (``MULTI_RECORD``, ``line``) and reject what SageMaker rejects."""
        set_ = object.__setattr__
        if self.BatchStrategy is not None:
            strategy = _normalise(self.BatchStrategy, _BATCH_STRATEGIES, "BatchStrategy")
            set_(self, "BatchStrategy", strategy)
        split_key = self.SplitType.replace("_", "").lower()
        if split_key in _UNSUPPORTED_SPLIT_TYPES:
            raise ParameterError(
                f"SplitType {_UNSUPPORTED_SPLIT_TYPES[split_key]} is for binary record formats; "
                "the local runner supports Line (one record per line) and None (whole file)"
            )
        set_(self, "SplitType", _normalise(self.SplitType, _SPLIT_TYPES, "SplitType"))
        set_(self, "AssembleWith", _normalise(self.AssembleWith, _ASSEMBLE_WITH, "AssembleWith"))
        set_(self, "JoinSource", _normalise(self.JoinSource, _JOIN_SOURCES, "JoinSource"))
        if self.MaxConcurrentTransforms == 0:
            set_(self, "MaxConcurrentTransforms", None)  # 0 = "let the container decide"
        self._check_ranges()
        self._check_data_processing()

    def _check_ranges(self) -> None:
        payload = self.MaxPayloadInMB
        if payload is not None:
            if payload == 0:
                raise ParameterError(
                    "MaxPayloadInMB 0 asks for HTTP chunked streaming, which the local runner "
                    f"does not do; use 1-{MAX_PAYLOAD_LIMIT_MB}"
                )
            if not 1 <= payload <= MAX_PAYLOAD_LIMIT_MB:
                raise ParameterError(
                    f"MaxPayloadInMB must be between 1 and {MAX_PAYLOAD_LIMIT_MB} (MiB), "
                    f"got {payload}"
                )
        concurrency = self.MaxConcurrentTransforms
        if concurrency is not None:
            if concurrency < 0:
                raise ParameterError(f"MaxConcurrentTransforms must be >= 1, got {concurrency}")
            effective_payload = payload if payload is not None else DEFAULT_MAX_PAYLOAD_MB
            if concurrency * effective_payload > MAX_PAYLOAD_LIMIT_MB:
                raise ParameterError(
                    f"MaxConcurrentTransforms x MaxPayloadInMB = {concurrency} x "
                    f"{effective_payload} = {concurrency * effective_payload}; SageMaker "
                    f"allows at most {MAX_PAYLOAD_LIMIT_MB}. Lower one of them"
                )
        if not 1 <= self.InvocationsTimeoutInSeconds <= 3600:
            raise ParameterError(
                "InvocationsTimeoutInSeconds must be between 1 and 3600, "
                f"got {self.InvocationsTimeoutInSeconds}"
            )
        if not 0 <= self.InvocationsMaxRetries <= 3:
            raise ParameterError(
                f"InvocationsMaxRetries must be between 0 and 3, got {self.InvocationsMaxRetries}"
            )
        if self.BatchStrategy is not None and self.SplitType == "None":
            raise ParameterError(
                "BatchStrategy needs a SplitType: with SplitType None each file is sent whole"
            )
        self._check_binary()

    def _check_binary(self) -> None:
        """Parquet and NPY are sent whole and answered whole (no lines to split or add)."""
        sent = BINARY_MEDIA_TYPES.get(media_type(self.ContentType) or "")
        if sent and self.SplitType != "None":
            raise ParameterError(
                f"ContentType {self.ContentType}: a {sent} file cannot be split into lines; "
                "use SplitType None (each file is one request, as Batch Transform sends it)"
            )
        answered = BINARY_MEDIA_TYPES.get(media_type(self.Accept) or "")
        if answered and self.AssembleWith != "None":
            raise ParameterError(
                f"Accept {self.Accept}: {answered} answers are binary and AssembleWith Line "
                "would append a newline to each, breaking the file; use AssembleWith None"
            )

    @property
    def is_binary(self) -> bool:
        """Whether requests carry whole binary files (Parquet, NPY)."""
        return media_type(self.ContentType) in BINARY_MEDIA_TYPES

    def _check_data_processing(self) -> None:
        input_filter = parse_filter(self.InputFilter, parameter="InputFilter")
        output_filter = parse_filter(self.OutputFilter, parameter="OutputFilter")
        wants_processing = (
            not input_filter.is_identity
            or not output_filter.is_identity
            or self.JoinSource == "Input"
        )
        if not wants_processing:
            return
        if media_type(self.ContentType) != "text/csv":
            raise ParameterError(
                "InputFilter, OutputFilter and JoinSource are applied to text/csv input by the "
                f"local runner; ContentType is {self.ContentType}"
            )
        if self.Accept is not None and media_type(self.Accept) != "text/csv":
            raise ParameterError(
                "JoinSource and OutputFilter need text/csv output to line up with the input "
                f"rows; Accept is {self.Accept}"
            )
        if self.SplitType != "Line" or self.AssembleWith != "Line":
            raise ParameterError(
                "InputFilter, OutputFilter and JoinSource work on records: use SplitType Line "
                "and AssembleWith Line (SageMaker requires both for CSV)"
            )

    @property
    def input_filter(self) -> RowFilter:
        """The parsed InputFilter (``$`` when unset)."""
        return parse_filter(self.InputFilter, parameter="InputFilter")

    @property
    def output_filter(self) -> RowFilter:
        """The parsed OutputFilter (``$`` when unset)."""
        return parse_filter(self.OutputFilter, parameter="OutputFilter")

    def server_environment(self) -> dict[str, str]:
        """The variables SageMaker puts into a batch container for this job.

        ``SAGEMAKER_BATCH`` always; the three ``SAGEMAKER_*`` limits only when the job
        set them; then the job's own ``Environment``.
        """
        env = {"SAGEMAKER_BATCH": "true"}
        if self.MaxPayloadInMB is not None:
            env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(self.MaxPayloadInMB)
        if self.BatchStrategy is not None:
            env["SAGEMAKER_BATCH_STRATEGY"] = (
                "MULTI_RECORD" if self.BatchStrategy == "MultiRecord" else "SINGLE_RECORD"
            )
        if self.MaxConcurrentTransforms is not None:
            env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(self.MaxConcurrentTransforms)
        env.update(self.Environment)
        return env


@dataclass(frozen=True)
class ResolvedParameters:
    """The values a run actually uses, and where each of the three negotiated ones came from."""

    job: TransformJobParameters
    BatchStrategy: str
    MaxPayloadInMB: int
    MaxConcurrentTransforms: int
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def max_payload_bytes(self) -> int:
        """MaxPayloadInMB in bytes: SageMaker's MB is a MiB."""
        return self.MaxPayloadInMB * MIB

    @property
    def checks_line_count(self) -> bool:
        """Whether each response must hold one line per record (line-oriented output)."""
        accept = media_type(self.job.Accept) or media_type(self.job.ContentType)
        return self.job.SplitType == "Line" and accept in LINE_MEDIA_TYPES

    def describe(self) -> str:
        """One line for logs and summaries, e.g. ``MultiRecord, 6 MiB payloads, 2 in flight``."""
        if self.job.SplitType == "None":
            return (
                f"whole files (SplitType None), up to {self.MaxPayloadInMB} MiB each, "
                f"{self.MaxConcurrentTransforms} in flight"
            )
        return (
            f"{self.BatchStrategy}, {self.MaxPayloadInMB} MiB payloads, "
            f"{self.MaxConcurrentTransforms} in flight"
        )


def resolve(
    job: TransformJobParameters, execution_parameters: dict[str, Any] | None
) -> ResolvedParameters:
    """Combine job values, the container's ``/execution-parameters`` and the defaults.

    Values set on the job win; the container's answer fills the rest; SageMaker's
    defaults (1, MultiRecord, 6) apply to whatever is still unset. An answer that is
    not usable (wrong type, out of range) is ignored for that field, as a missing
    answer would be.
    """
    offered = execution_parameters or {}
    sources: dict[str, str] = {}

    def pick(name: str, default: Any, convert: Any) -> Any:
        value = getattr(job, name)
        if value is not None:
            sources[name] = "job"
            return value
        if name in offered:
            try:
                converted = convert(offered[name])
            except (ParameterError, TypeError, ValueError):
                converted = None
            if converted is not None:
                sources[name] = "container"
                return converted
        sources[name] = "default"
        return default

    def container_int(value: Any, upper: int) -> int | None:
        number = int(value)
        return number if 1 <= number <= upper else None

    strategy = pick(
        "BatchStrategy",
        DEFAULT_BATCH_STRATEGY,
        lambda value: _normalise(str(value), _BATCH_STRATEGIES, "BatchStrategy"),
    )
    payload = pick(
        "MaxPayloadInMB",
        DEFAULT_MAX_PAYLOAD_MB,
        lambda value: container_int(value, MAX_PAYLOAD_LIMIT_MB),
    )
    concurrency = pick(
        "MaxConcurrentTransforms",
        DEFAULT_MAX_CONCURRENT_TRANSFORMS,
        lambda value: container_int(value, 1024),
    )
    return ResolvedParameters(
        job=job,
        BatchStrategy=strategy,
        MaxPayloadInMB=payload,
        MaxConcurrentTransforms=concurrency,
        sources=sources,
    )
