"""The Starlette application: SageMaker's three routes over `serving.inference`.

One app object per worker, built around a model that is already loaded, so
/ping can only ever say 200 when a prediction is possible. /invocations runs
its CPU work inline on the event loop on purpose: a worker busy predicting
cannot take new connections, and the supervisor hands them to idle workers
(see `serving.server`).
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serving.body import Body
from serving.errors import ModelError, RequestError, describe_error
from serving.inference import negotiate, run
from serving.model_loading import LoadedModel
from serving.negotiation import CUSTOM_ATTRIBUTES_HEADER, custom_attributes_proba
from serving.settings import Settings
from serving.user_service import UserService

log = logging.getLogger("serving")


def create_app(
    model: LoadedModel | UserService,
    settings: Settings,
) -> Starlette:
    """Build the ASGI app."""
    execution_parameters = {
        "MaxConcurrentTransforms": settings.workers,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": settings.advertised_max_payload_mb(),
    }
    user = model if isinstance(model, UserService) else None

    async def ping(request: Request) -> Response:
        return Response(status_code=200)

    async def parameters(request: Request) -> Response:
        return JSONResponse(execution_parameters)

    async def invocations(request: Request) -> Response:
        headers = request.headers
        try:
            from_header = custom_attributes_proba(headers.get(CUSTOM_ATTRIBUTES_HEADER))
            proba = settings.predict_proba if from_header is None else from_header
            content_type, accept = headers.get("content-type"), headers.get("accept")
            if user is not None:  # the user's inference.py hooks (serving.user_code)
                user_plan = user.negotiate(content_type, accept, predict_proba=proba)
                body = await read_body(request, settings.max_body_bytes)
                output, media_type = user.run(user_plan, body)
            else:
                plan = negotiate(model, content_type, accept, predict_proba=proba)
                body = await read_body(request, settings.max_body_bytes)
                output, media_type = run(model, plan, body), plan.response.value
        except RequestError as err:
            log.warning("POST /invocations %d: %s", err.status, err.message)
            return PlainTextResponse(err.message + "\n", status_code=err.status)
        except ClientDisconnect:
            # Nobody is listening any more; uvicorn drops whatever we answer.
            return Response(status_code=400)
        except ModelError as err:
            # The model failed on a well-formed request: one line for the client,
            # the traceback for the operator.
            log.error("POST /invocations 500: %s", err.message, exc_info=err.__cause__ or err)
            return PlainTextResponse(err.message + "\n", status_code=500, headers=err.headers())
        except Exception as exc:
            log.exception("POST /invocations 500: unexpected error")
            return PlainTextResponse(
                f"internal server error: {describe_error(exc)}\n", status_code=500
            )
        return Response(output, media_type=media_type)

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/execution-parameters", parameters, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )


async def read_body(request: Request, limit: int) -> Body:
    """The body as received (chunks, not joined), refusing (413) more than `limit` bytes.

    A declared Content-Length over the limit is refused before reading; a body
    sent without one is counted as it arrives.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, _too_large(int(declared), limit))
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        if chunk:
            total += len(chunk)
            if total > limit:
                raise RequestError(413, _too_large(total, limit, at_least=True))
            chunks.append(chunk)
    return Body(chunks)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    mib = limit / (1024 * 1024)
    return (
        f"request body is {'over ' if at_least else ''}{size} bytes, more than the "
        f"{mib:g} MiB limit (SERVING_MAX_BODY_MB); send smaller requests "
        f"(for Batch Transform, a smaller MaxPayloadInMB)"
    )
