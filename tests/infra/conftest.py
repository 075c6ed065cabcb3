"""Session fixtures: each program variant runs once (see infra_harness.variant)."""

from __future__ import annotations

import pytest
from infra_harness import Run, variant


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws.s3 imports its deprecated *V2 classes, which warn at import time; the
    # program uses none of them (test_infra_inventory checks the types it declares).
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws")


@pytest.fixture(scope="session")
def dev() -> Run:
    return variant("dev")


@pytest.fixture(scope="session")
def prod() -> Run:
    return variant("prod")


@pytest.fixture(scope="session")
def preview() -> Run:
    return variant("preview")


@pytest.fixture(scope="session")
def prod_preview() -> Run:
    return variant("prod-preview")


@pytest.fixture(scope="session")
def public() -> Run:
    return variant("public")
