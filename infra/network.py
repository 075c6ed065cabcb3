"""The notebook's network: a VPC, two public subnets in distinct zones, no inbound traffic."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.documents import FLOW_LOGS_PREFIX

SUBNET_COUNT = 2
# Flow log records are aggregated for up to 10 minutes (the cheaper of the two choices).
FLOW_LOG_AGGREGATION_SECONDS = 600


@dataclass(frozen=True)
class NetworkArgs:
    """`flow_logs_bucket_arn`: record the VPC's flow logs (all traffic) in this bucket under
    `flow-logs/` (None: no flow logs)."""

    prefix: str
    vpc_cidr: str
    flow_logs_bucket_arn: pulumi.Input[str] | None = None
    # What the flow log must wait for (the log bucket's policy, which admits log delivery).
    flow_logs_after: Sequence[pulumi.Resource] = field(default_factory=tuple)


def subnet_cidrs(vpc_cidr: str, count: int = SUBNET_COUNT) -> list[str]:
    """The first `count` quarters of the VPC range: room for two more subnets later."""
    return [str(net) for net in ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=2)][:count]


def _pick_zones(names: list[str]) -> list[str]:
    if len(names) < SUBNET_COUNT:
        raise pulumi.RunError(
            f"the region offers {len(names)} availability zone(s) for this account; "
            f"{SUBNET_COUNT} are needed: choose another region with pulumi config set aws:region"
        )
    return names[:SUBNET_COUNT]


class Network(pulumi.ComponentResource):
    """VPC with DNS, an internet gateway and route, two subnets, and the notebook's SG.

    The subnets are public (routed to the internet gateway) but give nothing a public IP:
    the notebook reaches the internet through SageMaker's direct internet access, and the
    only security group allows no inbound traffic at all.
    """

    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix

        vpc = aws.ec2.Vpc(
            f"{prefix}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{prefix}-vpc"},
            opts=child,
        )
        if args.flow_logs_bucket_arn is not None:
            # Straight to S3 (no IAM role needed: the log bucket's policy admits log delivery).
            aws.ec2.FlowLog(
                f"{prefix}-flow-logs",
                vpc_id=vpc.id,
                traffic_type="ALL",
                log_destination_type="s3",
                log_destination=pulumi.Output.from_input(args.flow_logs_bucket_arn).apply(
                    lambda arn: f"{arn}/{FLOW_LOGS_PREFIX}"
                ),
                max_aggregation_interval=FLOW_LOG_AGGREGATION_SECONDS,
                tags={"Name": f"{prefix}-flow-logs"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.flow_logs_after)),
            )
        # Adopt the VPC's default security group and strip every rule from it, so nothing
        # launched without an explicit group gets traffic (Security Hub EC2.2).
        aws.ec2.DefaultSecurityGroup(
            f"{prefix}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{prefix}-default-sg-locked"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{prefix}-igw", vpc_id=vpc.id, tags={"Name": f"{prefix}-igw"}, opts=child
        )
        routes = aws.ec2.RouteTable(
            f"{prefix}-public-rt",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={"Name": f"{prefix}-public-rt"},
            opts=child,
        )

        # Zones are looked up, not hard-coded; only the region's own zones (no Local or
        # Wavelength Zones, which need opting in and lack SageMaker).
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                )
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).names.apply(_pick_zones)

        subnets: list[aws.ec2.Subnet] = []
        for index, cidr in enumerate(subnet_cidrs(args.vpc_cidr)):
            subnet = aws.ec2.Subnet(
                f"{prefix}-public-{index + 1}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones[index],
                map_public_ip_on_launch=False,
                tags={"Name": f"{prefix}-public-{index + 1}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{prefix}-public-{index + 1}-rta",
                subnet_id=subnet.id,
                route_table_id=routes.id,
                opts=child,
            )
            subnets.append(subnet)

        security_group = aws.ec2.SecurityGroup(
            f"{prefix}-notebook-sg",
            vpc_id=vpc.id,
            description=f"{prefix} notebook: no inbound traffic, all outbound",
            ingress=[],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="All outbound (git clone, package installs, AWS APIs)",
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                )
            ],
            tags={"Name": f"{prefix}-notebook-sg"},
            opts=child,
        )

        self.vpc_id = vpc.id
        self.subnet_ids = pulumi.Output.all(*[s.id for s in subnets])
        self.security_group_id = security_group.id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "subnet_ids": self.subnet_ids,
                "security_group_id": self.security_group_id,
            }
        )
