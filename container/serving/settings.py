"""Runtime settings, read once from the environment.

Everything `serve` can be told comes from environment variables, the way
SageMaker configures a container (it sets the model's `Environment` and a few
`SAGEMAKER_*` variables and passes no arguments but `serve`). Reading them in
one place means a bad value stops start-up with one clear line instead of
failing later inside a worker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.errors import StartupError

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - the container must be reachable by SageMaker's agent
# SageMaker's default MaxPayloadInMB is 6 (MiB); the job may set up to 100.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
DEFAULT_MAX_PAYLOAD_MB = 6
SAGEMAKER_MAX_PAYLOAD_MB = 100
# 110 MiB admits SageMaker's largest payload (100 MiB) with room for a request
# that is slightly over because of line splitting.
DEFAULT_MAX_BODY_MB = 110.0
# SageMaker sends SIGKILL about 30 s after SIGTERM; finish in-flight work before.
GRACEFUL_SHUTDOWN_SECONDS = 25.0
# Batch Transform waits up to InvocationsTimeoutInSeconds (default 600, at most
# 3600) for an answer; the watchdog must not kill a worker that is still within
# it. https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelClientConfig.html
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 600
WATCHDOG_MARGIN_SECONDS = 60
# A client must send a complete request head within this time (slowloris guard),
# and may not leave a body unfinished without sending anything for longer.
DEFAULT_HEADER_TIMEOUT_SECONDS = 30.0
DEFAULT_BODY_IDLE_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_HEADER_KB = 64
# Open connections per worker; more get 503. SageMaker opens MaxConcurrentTransforms.
DEFAULT_MAX_CONNECTIONS = 1000

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    """What one `serve` process runs with; see `from_env` for the variables."""

    model_dir: Path
    host: str
    port: int
    workers: int
    max_payload_mb: int
    max_body_bytes: int
    predict_proba: bool
    graceful_shutdown_seconds: float = GRACEFUL_SHUTDOWN_SECONDS
    worker_timeout_seconds: float = float(
        DEFAULT_INVOCATION_TIMEOUT_SECONDS + WATCHDOG_MARGIN_SECONDS
    )
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_idle_timeout_seconds: float = DEFAULT_BODY_IDLE_TIMEOUT_SECONDS
    max_header_bytes: int = DEFAULT_MAX_HEADER_KB * 1024
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `MODEL_DIR`, `SAGEMAKER_BIND_TO_PORT`, `SERVING_*` (see the package doc)."""
        env = os.environ if env is None else env
        max_body_mb = _positive_float(env, "SERVING_MAX_BODY_MB", DEFAULT_MAX_BODY_MB)
        return cls(
            model_dir=Path(env.get("MODEL_DIR") or DEFAULT_MODEL_DIR),
            host=env.get("SERVING_HOST") or DEFAULT_HOST,
            port=_int_in_range(env, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT, 1, 65535),
            workers=_int_in_range(env, "SERVING_WORKERS", available_cpus(), 1, 1024),
            max_payload_mb=_int_in_range(
                env, "SERVING_MAX_PAYLOAD_MB", DEFAULT_MAX_PAYLOAD_MB, 1, SAGEMAKER_MAX_PAYLOAD_MB
            ),
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            predict_proba=_bool(env, "SERVING_PREDICT_PROBA"),
            worker_timeout_seconds=_worker_timeout(env),
            header_timeout_seconds=_positive_float(
                env, "SERVING_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_SECONDS, "seconds"
            ),
            body_idle_timeout_seconds=_positive_float(
                env, "SERVING_BODY_TIMEOUT", DEFAULT_BODY_IDLE_TIMEOUT_SECONDS, "seconds"
            ),
            max_header_bytes=1024
            * _int_in_range(env, "SERVING_MAX_HEADER_KB", DEFAULT_MAX_HEADER_KB, 1, 1024 * 1024),
            max_connections=_int_in_range(
                env, "SERVING_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1, 1_000_000
            ),
        )

    def advertised_max_payload_mb(self) -> int:
        """MaxPayloadInMB for /execution-parameters.

        SageMaker requires MaxConcurrentTransforms x MaxPayloadInMB <= 100, so on
        machines with many workers the payload shrinks rather than the concurrency.
        """
        return max(1, min(self.max_payload_mb, SAGEMAKER_MAX_PAYLOAD_MB // self.workers))


def parse_bool(value: str, name: str) -> bool:
    """Strict yes/no parsing: a typo must not silently mean "no"."""
    folded = value.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use true or false")


def available_cpus() -> int:
    """CPUs this process may really use: affinity mask and cgroup quota, not just the host."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    """`docker run --cpus=N` shows up as a cgroup v2 quota, not in the affinity mask."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except OSError:
        return None
    if len(text) != 2 or text[0] == "max":
        return None
    try:
        return int(text[0]) / int(text[1])
    except (ValueError, ZeroDivisionError):
        return None


def _int_in_range(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StartupError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise StartupError(f"{name}={value} is out of range; use {low} to {high}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    try:
        return parse_bool(env.get(name, ""), name)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def _worker_timeout(env: Mapping[str, str]) -> float:
    """SERVING_WORKER_TIMEOUT, else the invocation timeout plus a margin.

    The invocation timeout is SAGEMAKER_MODEL_SERVER_TIMEOUT when set (the
    variable AWS's own serving containers read for it), else Batch
    Transform's default of 600 s. The watchdog only kills a worker whose
    event loop has been stuck this long, so it must outlast any request the
    client still waits for.
    """
    if env.get("SERVING_WORKER_TIMEOUT", "").strip():
        return _positive_float(env, "SERVING_WORKER_TIMEOUT", 0.0, "seconds")
    invocation = _int_in_range(
        env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_INVOCATION_TIMEOUT_SECONDS, 1, 86400
    )
    return float(invocation + WATCHDOG_MARGIN_SECONDS)


def _positive_float(env: Mapping[str, str], name: str, default: float, unit: str = "MiB") -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise StartupError(f"{name}={raw!r} must be a positive number of {unit}")
    return value
