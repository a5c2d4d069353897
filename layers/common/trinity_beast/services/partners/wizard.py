"""The onboarding wizard: the exact AWS CLI commands both sides run (pure).

From a partner's details and this stack's network it writes each command as an argv list
(tests check every one against botocore's EC2 model) and as a copy-paste shell line. An id
that only exists once the partner has run their part (their endpoint or peering
connection) shows as a placeholder until it is registered; the commands then carry it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.partners.descriptions import ec2_safe
from trinity_beast.domain.partners.ids import service_id
from trinity_beast.domain.partners.model import Partner

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings

# The commercial AWS regions, for the wizard's select (the API takes any well-formed region id).
REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
)
ENDPOINT_PLACEHOLDER = "<VPC_ENDPOINT_ID>"
PEERING_PLACEHOLDER = "<VPC_PEERING_CONNECTION_ID>"


@dataclass(frozen=True, slots=True)
class StackNetwork:
    """This stack's side of a private connection, from settings (docs/configuration.md)."""

    region: str
    account_id: str
    service_name: str
    vpc_id: str
    vpc_cidr: str
    route_table_id: str
    security_group_id: str
    nlb_ip: str
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...]

    @classmethod
    def from_settings(cls, s: Settings) -> StackNetwork:
        return cls(
            region=s.region,
            account_id=s.aws_account_id,
            service_name=s.partner_service_name,
            vpc_id=s.vpc_id,
            vpc_cidr=s.vpc_cidr,
            route_table_id=s.route_table_id,
            security_group_id=s.partner_security_group_id,
            nlb_ip=s.udp_nlb_ip,
            tcp_ports=(s.lpo_port, s.lrs_port),
            udp_ports=(s.lpo_udp_port, s.lrs_udp_port),
        )

    @property
    def service_id(self) -> str:
        return service_id(self.service_name)

    def missing(self, connection_type: str, purpose: str = "wizard") -> list[str]:
        """The settings a `purpose` (wizard, approve, udp) needs for `connection_type` and lacks."""
        need: dict[str, str] = {}
        if purpose == "udp":
            need["BEAST_PARTNER_SECURITY_GROUP_ID"] = self.security_group_id
        elif connection_type == "privatelink":
            need["BEAST_PARTNER_SERVICE_NAME"] = self.service_name
        else:
            need.update(
                BEAST_VPC_ID=self.vpc_id,
                BEAST_ROUTE_TABLE_ID=self.route_table_id,
                BEAST_PARTNER_SECURITY_GROUP_ID=self.security_group_id,
            )
            if purpose == "wizard":
                need.update(BEAST_AWS_ACCOUNT_ID=self.account_id, BEAST_UDP_NLB_IP=self.nlb_ip)
        return [name for name, value in need.items() if not value]

    def public(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "account_id": self.account_id or None,
            "service_name": self.service_name or None,
            "vpc_id": self.vpc_id or None,
            "vpc_cidr": self.vpc_cidr,
            "route_table_id": self.route_table_id or None,
            "security_group_id": self.security_group_id or None,
            "udp_nlb_ip": self.nlb_ip or None,
            "tcp_ports": list(self.tcp_ports),
            "udp_ports": list(self.udp_ports),
        }


@dataclass(frozen=True, slots=True)
class Command:
    side: str  # "partner" or "operator"
    title: str
    argv: tuple[str, ...]
    complete: bool = True  # False while it holds a placeholder

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    def public(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "title": self.title,
            "command": self.shell,
            "argv": list(self.argv),
            "complete": self.complete,
        }


def udp_permissions(cidr: str, ports: tuple[int, ...], description: str) -> list[dict[str, Any]]:
    """One EC2 IpPermission per UDP port, as both the CLI and boto3 take it (no description: for revoking)."""
    ip_range = {"CidrIp": cidr, **({"Description": description} if description else {})}
    return [{"IpProtocol": "udp", "FromPort": port, "ToPort": port, "IpRanges": [ip_range]} for port in ports]


def rule_description(partner: Partner) -> str:
    """The partner's UDP rules carry its id (how a rule is traced back) and its name, EC2-safe."""
    return ec2_safe(f"trinity-beast partner {partner.id} {partner.name}")


def _ec2(operation: str, region: str, *args: str) -> tuple[str, ...]:
    return ("aws", "ec2", operation, "--region", region, *args)


def privatelink_commands(p: Partner, stack: StackNetwork) -> list[Command]:
    create = [
        "--vpc-endpoint-type",
        "Interface",
        "--vpc-id",
        p.vpc_id,
        "--service-name",
        stack.service_name,
        "--subnet-ids",
        *p.subnet_ids,
    ]
    if p.security_group_ids:
        create += ["--security-group-ids", *p.security_group_ids]
    if p.region != stack.region:
        create += ["--service-region", stack.region]  # cross-region PrivateLink
    create += ["--query", "VpcEndpoint.VpcEndpointId", "--output", "text"]
    endpoint = p.connection_id or ENDPOINT_PLACEHOLDER
    ports = " and ".join(str(port) for port in stack.tcp_ports)
    return [
        Command(
            "partner",
            f"Create the interface endpoint (TCP {ports}); send us the id it prints",
            _ec2("create-vpc-endpoint", p.region, *create),
        ),
        Command(
            "operator",
            "Accept the partner's endpoint connection",
            _ec2(
                "accept-vpc-endpoint-connections",
                stack.region,
                "--service-id",
                stack.service_id,
                "--vpc-endpoint-ids",
                endpoint,
            ),
            complete=p.connection_id is not None,
        ),
    ]


def peering_commands(p: Partner, stack: StackNetwork) -> list[Command]:
    pcx = p.connection_id or PEERING_PLACEHOLDER
    known = p.connection_id is not None
    # Our whole VPC, not the one configured NLB address: the NLB has an address in every zone
    # it spans, and a partner that routes only one of them loses UDP when that zone's node goes.
    our_route = stack.vpc_cidr
    commands = [
        Command(
            "partner",
            "Request the peering connection to our VPC; send us the id it prints",
            _ec2(
                "create-vpc-peering-connection",
                p.region,
                "--vpc-id",
                p.vpc_id,
                "--peer-vpc-id",
                stack.vpc_id,
                "--peer-owner-id",
                stack.account_id,
                "--peer-region",
                stack.region,
                "--query",
                "VpcPeeringConnection.VpcPeeringConnectionId",
                "--output",
                "text",
            ),
        ),
        Command(
            "partner",
            f"Route our VPC {stack.vpc_cidr} (the UDP load balancer's address in every zone) through the peering connection",
            _ec2(
                "create-route",
                p.region,
                "--route-table-id",
                p.route_table_id or "",
                "--destination-cidr-block",
                our_route,
                "--vpc-peering-connection-id",
                pcx,
            ),
            complete=known,
        ),
        Command(
            "operator",
            "Accept the peering connection",
            _ec2("accept-vpc-peering-connection", stack.region, "--vpc-peering-connection-id", pcx),
            complete=known,
        ),
        Command(
            "operator",
            f"Route the partner's CIDR {p.cidr} through the peering connection",
            _ec2(
                "create-route",
                stack.region,
                "--route-table-id",
                stack.route_table_id,
                "--destination-cidr-block",
                p.cidr or "",
                "--vpc-peering-connection-id",
                pcx,
            ),
            complete=known,
        ),
    ]
    for permission in udp_permissions(p.cidr or "", stack.udp_ports, rule_description(p)):
        commands.append(
            Command(
                "operator",
                f"Allow UDP {permission['FromPort']} from {p.cidr}",
                _ec2(
                    "authorize-security-group-ingress",
                    stack.region,
                    "--group-id",
                    stack.security_group_id,
                    "--ip-permissions",
                    json.dumps([permission], separators=(",", ":")),
                ),
            )
        )
    return commands


def commands(p: Partner, stack: StackNetwork) -> list[Command]:
    return privatelink_commands(p, stack) if p.connection_type == "privatelink" else peering_commands(p, stack)


def onboarding(p: Partner, stack: StackNetwork) -> dict[str, Any]:
    """What the wizard shows for `p`: the steps for both sides and what the partner then reaches."""
    if p.connection_type == "privatelink":
        reach = [f"TCP {port} on the endpoint's DNS name" for port in stack.tcp_ports]
    else:
        reach = [f"UDP {stack.nlb_ip}:{port}" for port in stack.udp_ports]
    return {
        "partner_id": p.id,
        "connection_type": p.connection_type,
        "commands": [c.public() for c in commands(p, stack)],
        "complete": all(c.complete for c in commands(p, stack)),
        "reach": reach,
        "stack": stack.public(),
    }
