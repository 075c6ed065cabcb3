"""The README's pictures and Security table stay true to the stack (issues 14 and 15)."""

from __future__ import annotations

import re

import pytest
from infra_harness import REPO_ROOT, project_file

README = (REPO_ROOT / "README.md").read_text()
DIAGRAMS = re.findall(r"```mermaid\n(.*?)```", README, re.S)
EDGE = re.compile(r"^\s*(\w+)\s*(?:-->|---|-\.->)(?:\|[^|]*\|)?\s*(\w+)")


def _flowchart() -> str:
    [chart] = [d for d in DIAGRAMS if d.startswith("flowchart")]
    return chart


def test_architecture_edges_join_nodes_never_subgraphs() -> None:
    """An edge to a subgraph id ends at the box's border, in empty space (the old
    provider -> account edge); every edge must join two declared nodes."""
    chart = _flowchart()
    subgraphs = set(re.findall(r"subgraph (\w+)\[", chart))
    nodes = set(re.findall(r"(?:^|\s)(\w+)[\[(]", chart)) - subgraphs - {"subgraph"}
    edges = [EDGE.match(line).groups() for line in chart.splitlines() if EDGE.match(line)]
    assert len(edges) >= 20
    for start, end in edges:
        assert start in nodes and end in nodes, (start, end)
        assert start not in subgraphs and end not in subgraphs, (start, end)
    assert chart.startswith("flowchart TB")


@pytest.mark.parametrize(
    "label",
    [
        "Function role",  # the Lambda's role
        "Log group /aws/lambda/",  # and its log group
        "Job role",
        "Notebook role",
        "reads model + input, writes .out",  # the jobs' reads and writes
        "pulls by digest",
        "Log bucket",
        "KMS key",
    ],
)
def test_architecture_shows(label: str) -> None:
    assert label in _flowchart()


def test_the_s3_drop_path_is_a_sequence_diagram_with_its_failure_branch() -> None:
    [sequence] = [d for d in DIAGRAMS if d.startswith("sequenceDiagram")]
    order = [
        "PutObject transform/input/",
        "ObjectCreated",
        "job name = stack prefix + hash(bucket, key, version)",
        "CreateTransformJob",
        "ResourceInUse",
        "GetObject transform/input/",
        "PutObject transform/output/",
        "Transform Job State Change",
        "Publish",
        "email or other subscription",
        "SQS failed-events queue",
    ]
    positions = [sequence.index(step) for step in order[:-1]]
    assert positions == sorted(positions)
    assert "L-)Q:" in sequence and order[-1] in sequence


def test_security_table_names_every_security_switch_with_both_stacks() -> None:
    section = README.split("## Security\n", 1)[1].split("\n## ", 1)[0]
    schema = project_file()["config"]
    for key in (
        "kmsKey",
        "vpcFlowLogs",
        "s3AccessLogging",
        "logRetentionDays",
        "lambdaTracing",
        "notebookSageMakerFullAccess",
        "allowAllBuckets",
    ):
        assert f"`{key}`" in section and key in schema, key
    header = "| Control | dev | prod | Why / exception |"
    assert header in section
    for exception in (
        "Notebook direct internet access",
        "All-egress notebook security group",
        "Lambda outside the VPC",
        "ECR tag immutability",
        "Secret rotation",
        "Lambda code signing",
        "alias/aws/sns",
    ):
        assert exception in section, exception
