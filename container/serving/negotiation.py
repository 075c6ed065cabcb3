"""Content negotiation: which format a request is in and which one to answer in.

Kept apart from parsing so the server can refuse an unsupported Content-Type
(415) or Accept (406) before it reads a large body, and so the rules live in
one place: Content-Type picks the decoder (parameters such as `charset=utf-8`
are accepted); Accept picks the encoder, defaulting to the request's own format
when it is missing or `*/*`; a `predict_proba=true|false` parameter on Accept,
or on the `X-Amzn-SageMaker-Custom-Attributes` header, switches probabilities
on or off for that request.
"""

from __future__ import annotations

import enum
import re

from serving.errors import RequestError
from serving.settings import parse_bool

PROBA_PARAMETER = "predict_proba"
CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"


class Format(enum.Enum):
    """A wire format; the value is the media type the server answers with."""

    CSV = "text/csv"
    JSON = "application/json"
    JSONLINES = "application/jsonlines"
    PARQUET = "application/x-parquet"  # a whole Parquet file per request (SplitType None)
    NPY = "application/x-npy"  # numpy's .npy, as AWS's scikit-learn container takes; in only


_MEDIA_TYPES: dict[str, Format] = {
    "text/csv": Format.CSV,
    "application/csv": Format.CSV,
    "application/json": Format.JSON,
    "application/jsonlines": Format.JSONLINES,
    "application/x-jsonlines": Format.JSONLINES,
    "application/jsonl": Format.JSONLINES,
    "application/x-ndjson": Format.JSONLINES,
    "application/ndjson": Format.JSONLINES,
    "application/x-parquet": Format.PARQUET,
    "application/vnd.apache.parquet": Format.PARQUET,
    "application/x-npy": Format.NPY,
}
# Binary request formats answer in CSV unless Accept asks otherwise; NPY is never an answer.
BINARY = frozenset({Format.PARQUET, Format.NPY})
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
SUPPORTED = (
    "text/csv, application/json, application/jsonlines, application/x-parquet or application/x-npy"
)
ANSWERS = "text/csv, application/json, application/jsonlines or application/x-parquet"


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """`"Text/CSV; charset=UTF-8"` -> `("text/csv", {"charset": "UTF-8"})`."""
    media, *raw_params = text.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        key, sep, value = raw.partition("=")
        key = key.strip().lower()
        if key and sep:
            params[key] = value.strip().strip('"')
    return media.strip().lower(), params


def request_format(content_type: str | None) -> Format:
    """Decoder for a Content-Type header; 415 when it is missing or unsupported."""
    if content_type is None or not content_type.strip():
        raise RequestError(415, f"missing Content-Type header; send {SUPPORTED}")
    media, params = parse_media_type(content_type)
    fmt = _MEDIA_TYPES.get(media)
    if fmt is None:
        raise RequestError(
            415, f"unsupported Content-Type {_shorten(content_type)!r}; send {SUPPORTED}"
        )
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _CHARSETS:
        raise RequestError(415, f"unsupported charset {_shorten(charset)!r}; send UTF-8")
    return fmt


def response_format(accept: str | None, request: Format) -> tuple[Format, bool | None]:
    """Encoder for an Accept header, plus its predict_proba parameter (None when absent).

    Missing Accept or `*/*` answers in the request's format; `text/*` means CSV;
    `application/*` keeps a JSON request's flavour and turns CSV into JSON. Among
    several acceptable types the highest q wins, then the most specific, then the
    first listed. Nothing acceptable gives 406.
    """
    default = Format.CSV if request in BINARY else request
    if accept is None or not accept.strip():
        return default, None
    best: tuple[float, int, int] | None = None
    chosen: tuple[Format, dict[str, str]] | None = None
    for index, part in enumerate(accept.split(",")):
        if not part.strip():
            continue
        media, params = parse_media_type(part)
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            continue  # RFC 9110: an unparsable weight makes the range unusable
        if not quality > 0:
            continue
        fmt, specificity = _match(media, default)
        if fmt is None or fmt is Format.NPY:
            continue
        rank = (quality, specificity, -index)
        if best is None or rank > best:
            best, chosen = rank, (fmt, params)
    if chosen is None:
        raise RequestError(406, f"cannot answer with Accept {_shorten(accept)!r}; accept {ANSWERS}")
    fmt, params = chosen
    return fmt, _proba_param(params.get(PROBA_PARAMETER), "Accept parameter")


def custom_attributes_proba(header: str | None) -> bool | None:
    """`predict_proba=true` inside SageMaker's free-form custom-attributes header."""
    if not header:
        return None
    for item in re.split(r"[;,]", header):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() == PROBA_PARAMETER:
            return _proba_param(value.strip().strip('"'), CUSTOM_ATTRIBUTES_HEADER)
    return None


def _match(media: str, request: Format) -> tuple[Format | None, int]:
    fmt = _MEDIA_TYPES.get(media)
    if fmt is not None:
        return fmt, 2
    if media == "*/*" or media == "*":
        return request, 0
    if media == "text/*":
        return Format.CSV, 1
    if media == "application/*":
        return (Format.JSON if request is Format.CSV else request), 1
    return None, 0


def _proba_param(value: str | None, where: str) -> bool | None:
    if value is None:
        return None
    try:
        return parse_bool(value, f"{PROBA_PARAMETER} in {where}")
    except ValueError as exc:
        raise RequestError(400, _shorten(str(exc), 200)) from None
