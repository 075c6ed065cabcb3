"""Requests through the user's hooks (see `serving.user_code`), the server's defaults filling gaps.

Kept apart from loading the module because the rules here are per request and
decide the status code: the server's own decoders and encoders refuse (415/406)
only what they themselves would have to handle; a failing `input_fn` is the
request's fault (400), a failing `predict_fn` / `output_fn` / `transform_fn` the
model's (`ModelError`, 500 with `X-Model-Error: deterministic`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.body import Body
from serving.codecs import encode
from serving.errors import ModelError, RequestError, describe_error
from serving.inference import Plan, answered_probabilities, parse, predict, warm_up
from serving.model_loading import LoadedModel
from serving.negotiation import Format, request_format, response_format
from serving.user_code import DEFAULT_ACCEPT, Hook, UserCode

log = logging.getLogger("serving")

# AWS hands these bodies to input_fn / transform_fn as text, all others as bytes
# (sagemaker_containers / sagemaker_inference `content_types.UTF8_TYPES`).
UTF8_TYPES = frozenset({"application/json", "text/csv"})


@dataclass(frozen=True)
class UserPlan:
    """What to do with one request, decided from its headers (see `UserService.negotiate`)."""

    content_type: str  # as the user's hooks see it
    accept: str  # as the user's hooks see it
    server: Plan | None  # the server's own decoder/encoder choice, where its defaults run


@dataclass
class UserService:
    """A model served through the user's hooks, the server's defaults filling the gaps."""

    code: UserCode
    model: Any  # what model_fn returned, else the unpickled estimator
    loaded: LoadedModel | None  # the server's view of `model` when it has predict()
    model_dir: Path
    default_accept: str = DEFAULT_ACCEPT
    hooks: Mapping[str, Hook] = field(init=False)

    def __post_init__(self) -> None:
        self.hooks = self.code.hooks

    # Attributes `serve` reports and checks, as on LoadedModel.
    @property
    def path(self) -> Path:
        return self.code.path

    @property
    def feature_count(self) -> int | None:
        return self.loaded.feature_count if self.loaded is not None else None

    @property
    def has_predict_proba(self) -> bool:
        return (
            self.loaded is not None
            and self.loaded.has_predict_proba
            and not {"predict_fn", "output_fn", "transform_fn"} & self.hooks.keys()
        )

    def describe(self) -> str:
        model = self.loaded.describe() if self.loaded is not None else type(self.model).__name__
        return f"{model} with user hooks {', '.join(self.hooks) or '(none)'}"

    def warm_up(self) -> float:
        """Warm the server's own decoders/encoders where they run (user hooks are not called)."""
        if self.loaded is None or self.hooks.keys() & {"input_fn", "predict_fn", "transform_fn"}:
            return 0.0
        return warm_up(self.loaded)

    def negotiate(
        self, content_type: str | None, accept: str | None, *, predict_proba: bool | None = None
    ) -> UserPlan:
        """Refuse (415/406/400) only what the server's own defaults would have to handle."""
        user_accept = accept.strip() if accept and accept.strip() not in ("", "*/*") else None
        user_accept = user_accept or self.default_accept
        if "transform_fn" in self.hooks:
            self._refuse_proba(bool(predict_proba))
            return UserPlan(content_type or DEFAULT_ACCEPT, user_accept, None)
        if "input_fn" in self.hooks:
            request = _known_format(content_type) or Format.JSON
        else:
            request = request_format(content_type)
        # Probabilities are the server's option: only where its predict and encoder run.
        response, from_accept = request, None
        if "output_fn" not in self.hooks:
            response, from_accept = response_format(accept, request)
        proba = from_accept if from_accept is not None else bool(predict_proba)
        self._refuse_proba(proba)
        server = Plan(request, response, proba)
        return UserPlan(content_type or DEFAULT_ACCEPT, user_accept, server)

    def _refuse_proba(self, asked: bool) -> None:
        if not asked or self.has_predict_proba:
            return
        custom = sorted({"predict_fn", "output_fn", "transform_fn"} & self.hooks.keys())
        why = (
            f"{' and '.join(custom)} in {self.code.path} decide what is answered"
            if custom
            else f"the model ({self.describe()}) has no predict_proba"
        )
        raise RequestError(
            400, f"probabilities were asked for, but {why}; ask without predict_proba"
        )

    def run(self, plan: UserPlan, body: bytes | Body) -> tuple[bytes, str]:
        """Response body and media type for one request, through the hooks."""
        transform_fn = self.hooks.get("transform_fn")
        if transform_fn is not None:
            data = self._text_or_bytes(body, plan.content_type)
            result = self._call(transform_fn, self.model, data, plan.content_type, plan.accept)
            return self._response(result, plan.accept, transform_fn.name)
        assert plan.server is not None
        data = self._input(plan, body)
        predict_fn = self.hooks.get("predict_fn")
        if predict_fn is not None:
            prediction = self._call(predict_fn, data, self.model, rows=_rows(data))
            probabilities = None
        else:
            prediction, probabilities = self._default_predict(plan, data)
        output_fn = self.hooks.get("output_fn")
        if output_fn is not None:
            result = self._call(output_fn, prediction, plan.accept)
            return self._response(result, plan.accept, output_fn.name)
        try:
            labels = np.atleast_1d(np.asarray(prediction))
            return encode(plan.server.response, labels, probabilities), plan.server.response.value
        except Exception as exc:
            raise ModelError.wrap(exc, "the default output_fn", rows=_rows(prediction)) from exc

    def _input(self, plan: UserPlan, body: bytes | Body) -> Any:
        input_fn = self.hooks.get("input_fn")
        assert plan.server is not None
        if input_fn is None:
            return parse(self.loaded, plan.server.request, body)
        data = self._text_or_bytes(body, plan.content_type)
        try:
            return input_fn(data, plan.content_type)
        except RequestError:
            raise
        except Exception as exc:
            log.warning("%s failed", self.code.named(input_fn.name), exc_info=True)
            raise RequestError(
                400, f"{self.code.named(input_fn.name)} rejected the request: {describe_error(exc)}"
            ) from None

    def _default_predict(self, plan: UserPlan, data: Any) -> tuple[Any, np.ndarray | None]:
        assert self.loaded is not None and plan.server is not None
        if "input_fn" not in self.hooks:  # the server decoded it: its full predict path
            return predict(self.loaded, data, plan.server.predict_proba)
        # The user's input_fn decoded it: call the model on it as AWS's default does.
        estimator = self.loaded.estimator
        try:
            labels = estimator.predict(data)
            if not plan.server.predict_proba:
                return labels, None
            probabilities = np.asarray(estimator.predict_proba(data))
        except (ValueError, TypeError) as exc:
            raise RequestError(
                400,
                f"the model rejected what {self.code.named('input_fn')} returned: "
                f"{describe_error(exc)}",
            ) from None
        except Exception as exc:
            raise ModelError.wrap(exc, "predict", rows=_rows(data)) from exc
        return labels, answered_probabilities(probabilities)

    def _call(self, hook: Hook, *args: Any, rows: int | None = None) -> Any:
        try:
            return hook(*args)
        except Exception as exc:
            raise ModelError.wrap(exc, hook.name, where=str(self.code.path), rows=rows) from exc

    def _text_or_bytes(self, body: bytes | Body, content_type: str) -> str | bytes:
        raw = Body.of(body).joined()
        if content_type not in UTF8_TYPES:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(
                400, f"{content_type} body is not UTF-8 (byte {exc.start}); send UTF-8 text"
            ) from None

    def _response(self, result: Any, accept: str, name: str) -> tuple[bytes, str]:
        content_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        if isinstance(result, str):
            result = result.encode("utf-8")
        if isinstance(result, bytes | bytearray | memoryview) and isinstance(content_type, str):
            return bytes(result), content_type
        raise ModelError(
            f"model error in {self.code.named(name)}: returned a {type(result).__name__}; "
            f"return bytes, str or a (body, content_type) tuple"
        )


def _known_format(content_type: str | None) -> Format | None:
    if not content_type:
        return None
    try:
        return request_format(content_type)
    except RequestError:
        return None


def _rows(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None
