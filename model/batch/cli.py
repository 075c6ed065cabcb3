"""Command-line options for a local transform, shared by both scripts.

Each job option is spelled two ways: kebab-case (``--max-payload-in-mb``) and
SageMaker's own field name (``--MaxPayloadInMB``), so a job spec copied from
CreateTransformJob works as it is. Leaving an option out means "not set on the
job", exactly like leaving the field out of the API call.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from model.batch.params import (
    BINARY_MEDIA_TYPES,
    DEFAULT_MAX_PAYLOAD_MB,
    MAX_PAYLOAD_LIMIT_MB,
    ParameterError,
    TransformJobParameters,
    media_type,
)

if TYPE_CHECKING:
    from model.batch.local import ServerOptions

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "-", name).lower()


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The CreateTransformJob parameters the local runner honours."""
    group = parser.add_argument_group(
        "Batch Transform job parameters (SageMaker's names; unset = not set on the job)"
    )

    def option(name: str, **kwargs: object) -> None:
        group.add_argument(f"--{_kebab(name)}", f"--{name}", dest=name, **kwargs)  # type: ignore[arg-type]

    option(
        "BatchStrategy",
        metavar="{MultiRecord,SingleRecord}",
        help="MultiRecord packs as many lines as fit into MaxPayloadInMB per request; "
        "SingleRecord sends one line per request (default: the server's "
        "/execution-parameters, else MultiRecord)",
    )
    option(
        "MaxPayloadInMB",
        type=int,
        metavar="MB",
        help=f"largest request body in MiB, 1-{MAX_PAYLOAD_LIMIT_MB} (default: the server's "
        f"/execution-parameters, else {DEFAULT_MAX_PAYLOAD_MB})",
    )
    option(
        "MaxConcurrentTransforms",
        type=int,
        metavar="N",
        help="requests in flight; N x MaxPayloadInMB must be <= 100 (default: the server's "
        "/execution-parameters, i.e. one per serving worker, else 1)",
    )
    option(
        "SplitType",
        metavar="{Line,None}",
        help="Line (one record per line; the default for text) or None (whole file per "
        "request; the default for Parquet and NPY)",
    )
    option(
        "AssembleWith",
        default="Line",
        metavar="{Line,None}",
        help="Line (default): a newline after each answer; None: answers concatenated",
    )
    option(
        "ContentType",
        metavar="TYPE",
        help="Content-Type of each request (default text/csv; application/x-parquet or "
        "application/x-npy when the input files are Parquet or NPY)",
    )
    option(
        "Accept",
        metavar="TYPE",
        help="Accept header; unset: the server answers in the request's format",
    )
    option(
        "InvocationsTimeoutInSeconds",
        type=int,
        default=600,
        metavar="S",
        help="seconds to wait for each answer, 1-3600 (default 600)",
    )
    option(
        "InvocationsMaxRetries",
        type=int,
        default=3,
        metavar="N",
        help="retries of a request that got a 5xx or no answer, 0-3 (default 3); "
        "a 4xx is never retried",
    )
    option(
        "InputFilter",
        metavar="JSONPATH",
        help="columns to send, e.g. '$[1:]' (drop an id column); end of a slice is inclusive",
    )
    option(
        "OutputFilter",
        metavar="JSONPATH",
        help="columns to keep of the (joined) output row, e.g. '$[0,-1]'",
    )
    option(
        "JoinSource",
        default="None",
        metavar="{None,Input}",
        help="Input: write each input row followed by its prediction",
    )
    group.add_argument(
        "--env",
        dest="Environment",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the model server, like the model's Environment "
        "(repeatable), e.g. --env SERVING_PREDICT_PROBA=true",
    )


def job_from_args(
    args: argparse.Namespace, detected_content_type: str | None = None
) -> TransformJobParameters:
    """The validated job parameters; ParameterError (a UserError) if SageMaker would refuse.

    ``detected_content_type`` (the input files' format, when they are Parquet or NPY)
    fills an unset ContentType; an unset SplitType is None for those whole-file
    formats and Line otherwise.
    """
    environment: dict[str, str] = {}
    for item in args.Environment:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise ParameterError(f"--env {item!r}: use KEY=VALUE with a valid variable name")
        environment[key] = value
    content_type = args.ContentType or detected_content_type or "text/csv"
    split_type = args.SplitType or (
        "None" if media_type(content_type) in BINARY_MEDIA_TYPES else "Line"
    )
    return TransformJobParameters(
        BatchStrategy=args.BatchStrategy,
        MaxPayloadInMB=args.MaxPayloadInMB,
        MaxConcurrentTransforms=args.MaxConcurrentTransforms,
        SplitType=split_type,
        AssembleWith=args.AssembleWith,
        ContentType=content_type,
        Accept=args.Accept,
        InvocationsTimeoutInSeconds=args.InvocationsTimeoutInSeconds,
        InvocationsMaxRetries=args.InvocationsMaxRetries,
        InputFilter=args.InputFilter,
        OutputFilter=args.OutputFilter,
        JoinSource=args.JoinSource,
        Environment=environment,
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """How the local ``serve`` process runs."""
    group = parser.add_argument_group("local model server")
    group.add_argument("--port", type=int, help="loopback port for serve (default: a free one)")
    group.add_argument(
        "--workers",
        type=int,
        help="serving worker processes (default: one per CPU, as in the image)",
    )
    group.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds to wait for serve's /ping (default 180)",
    )
    group.add_argument(
        "--hang-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="stop the run when serve shows no sign of life (no answer, no /ping, no CPU "
        "use) for this long (default 30)",
    )


def server_from_args(args: argparse.Namespace, **overrides: object) -> ServerOptions:
    """ServerOptions from the parsed ``--port``/``--workers``/``--startup-timeout``."""
    from model.batch.local import ServerOptions

    if args.port is not None and not 1 <= args.port <= 65535:
        raise ParameterError(f"--port must be between 1 and 65535, got {args.port}")
    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {args.workers}")
    if args.hang_seconds <= 0:
        raise ParameterError(f"--hang-seconds must be positive, got {args.hang_seconds}")
    values: dict[str, object] = {
        "port": args.port,
        "workers": args.workers,
        "startup_timeout": args.startup_timeout,
        "hang_seconds": args.hang_seconds,
    }
    values.update(overrides)
    return ServerOptions(**values)  # type: ignore[arg-type]
