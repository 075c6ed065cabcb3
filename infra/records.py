"""Resource records as the invariants see them, whatever produced them.

A record is `{"type": <token>, "name": <logical name>, "inputs": {...}, "outputs": {...},
"protect": bool, "provider": <provider reference>, "urn": ..., "parent": <urn>,
"dependencies": [urns], "property_dependencies": {prop: [urns]}}` with Pulumi's camelCase
property names: what the engine records, what mocks receive, and what `infra.crossguard`
builds from a `pulumi-policy` stack validation. These helpers read them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Record = Mapping[str, Any]

# Pulumi's wire format marks a secret as {SIG_KEY: SECRET_SIG, "value": ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a marker, not a password
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def plain(value: Any) -> Any:
    """The value with every secret envelope replaced by its content."""
    if isinstance(value, Mapping):
        if value.get(SIG_KEY) == SECRET_SIG:
            return plain(value.get("value"))
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def known(value: Any) -> bool:
    return value is not None and value != UNKNOWN


def props(record: Record) -> dict[str, Any]:
    """Outputs over inputs: after `up` the outputs hold computed values such as ARNs."""
    merged = dict(plain(record.get("inputs") or {}))
    merged.update({k: v for k, v in plain(record.get("outputs") or {}).items() if known(v)})
    return merged


def of_type(resources: Iterable[Record], *types: str) -> Iterator[Record]:
    return (r for r in resources if r["type"] in types)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def document(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str) and raw and raw != UNKNOWN:
        return json.loads(raw)
    return None


def depends_on(record: Record, urn: Any, prop: str | None = None) -> bool:
    """Whether `record` depends on `urn`: through property `prop` when the record says which
    property depends on what (the engine and pulumi-policy do), else at all."""
    by_property = record.get("property_dependencies") or {}
    if prop is not None and prop in by_property:
        return urn in by_property[prop]
    return urn in (record.get("dependencies") or ())
