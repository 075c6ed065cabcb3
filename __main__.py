"""Pulumi entry point: every resource is declared by `infra.program.build()`."""

from infra.program import build

build()
