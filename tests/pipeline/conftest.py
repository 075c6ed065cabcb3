"""Fixtures for the local Batch Transform tests (helpers live in local_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_server import FakeModelServer


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry pauses of milliseconds: the tests count retries, they do not time them."""
    monkeypatch.setattr("model.batch.client.RETRY_BACKOFF_SECONDS", 0.001)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeModelServer]]:
    """Start fake servers on free loopback ports; all are shut down after the test."""
    started: list[FakeModelServer] = []

    def start(**options: Any) -> FakeModelServer:
        server = FakeModelServer(**options).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
