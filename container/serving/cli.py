"""`serve`: the console script SageMaker runs (`docker run IMAGE serve`).

Start-up order matters and is the point of this module: read settings, cap
native thread pools and tune the allocator (before numpy is imported; see
`serving.runtime`), import everything, load the model, warm every code path
once, freeze the heap, and only then open the port and fork the workers. Until the port is open
nothing answers /ping, and once it is open every worker can predict at once.
Any problem ends `serve` here with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from serving.errors import StartupError
from serving.runtime import (
    freeze_heap,
    limit_native_threads,
    raise_open_file_limit,
    tune_allocator,
)
from serving.settings import Settings

log = logging.getLogger("serving")

EXIT_CONFIG = 2
EXIT_MODEL = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serve",
        description=(
            "Serve a scikit-learn model.joblib with the SageMaker inference contract "
            "(GET /ping, POST /invocations, GET /execution-parameters). Configured by "
            "MODEL_DIR, SAGEMAKER_BIND_TO_PORT, SERVING_HOST, SERVING_WORKERS, "
            "SERVING_MAX_PAYLOAD_MB, SERVING_MAX_BODY_MB and SERVING_PREDICT_PROBA; "
            "the options below override the environment."
        ),
    )
    # SageMaker starts the container as `IMAGE serve`: accept that word.
    parser.add_argument("command", nargs="?", choices=["serve"], help="optional; the only command")
    parser.add_argument("--model-dir", help="directory holding model.joblib (MODEL_DIR)")
    parser.add_argument("--host", help="address to bind (SERVING_HOST, default 0.0.0.0)")
    parser.add_argument("--port", help="port (SAGEMAKER_BIND_TO_PORT, default 8080)")
    parser.add_argument("--workers", help="worker processes (SERVING_WORKERS, default: CPUs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM; returns the process exit code."""
    args = _parser().parse_args(argv)
    _configure_logging()
    env = dict(os.environ)
    for variable, value in (
        ("MODEL_DIR", args.model_dir),
        ("SERVING_HOST", args.host),
        ("SAGEMAKER_BIND_TO_PORT", args.port),
        ("SERVING_WORKERS", args.workers),
    ):
        if value is not None:
            env[variable] = value
    try:
        settings = Settings.from_env(env)
    except StartupError as err:
        return _fail(str(err), EXIT_CONFIG)
    limit_native_threads(settings.workers)
    tune_allocator()
    raise_open_file_limit()
    try:
        return _serve(settings)
    except StartupError as err:
        return _fail(str(err), EXIT_MODEL)


def _serve(settings: Settings) -> int:
    started = time.perf_counter()
    # Heavy imports happen here, after the thread caps are in the environment;
    # the model first, so a missing model.joblib fails before anything slow.
    from serving.model_loading import load_model
    from serving.user_code import start_user_code

    # The user's inference.py (imported, model_fn run) if the model carries one.
    model = start_user_code(settings.model_dir) or load_model(settings.model_dir)

    from serving.app import create_app
    from serving.inference import warm_up
    from serving.server import Supervisor, listen
    from serving.user_service import UserService
    from serving.worker import uvicorn_config

    if settings.predict_proba and not model.has_predict_proba:
        raise StartupError(
            f"SERVING_PREDICT_PROBA is on, but the model in {model.path} "
            f"({model.describe()}) has no predict_proba"
        )
    loaded = time.perf_counter()
    warm_seconds = model.warm_up() if isinstance(model, UserService) else warm_up(model)
    app = create_app(model, settings)
    config = uvicorn_config(app, settings)
    freeze_heap()
    sock = listen(settings.host, settings.port)
    _log_batch_settings()
    log.info(
        "serving %s (%s features) from %s on http://%s:%d with %d worker(s); "
        "loaded in %.2f s, warmed in %.2f s",
        model.describe(),
        model.feature_count if model.feature_count is not None else "?",
        model.path,
        settings.host,
        sock.getsockname()[1],
        settings.workers,
        loaded - started,
        warm_seconds,
    )
    if not hasattr(os, "fork"):  # pragma: no cover - Windows laptops: one in-process worker
        import uvicorn

        uvicorn.Server(config).run(sockets=[sock])
        return 0
    code = Supervisor(sock, config, settings).run()
    sock.close()
    log.info("stopped")
    return code


def _log_batch_settings() -> None:
    batch = {k: v for k, v in os.environ.items() if k.startswith("SAGEMAKER_")}
    if batch:
        log.info("SageMaker settings: %s", ", ".join(f"{k}={v}" for k, v in sorted(batch.items())))


def _configure_logging() -> None:
    if logging.getLogger().handlers:
        return
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(message)s",
    )


def _fail(message: str, code: int) -> int:
    print(f"serve: error: {message}", file=sys.stderr, flush=True)
    return code
