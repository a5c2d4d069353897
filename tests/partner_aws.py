"""An AWS world for the partner tests, in moto: this stack's VPC, route table, UDP security
group, NLBs and PrivateLink endpoint service, plus partner accounts that ask to connect.

moto has no describe/accept/reject_vpc_endpoint_connections (and marks a partner's
endpoint available at once), so `EndpointConnections` plays those three calls: botocore
`before-call` handlers on the clients' event system answer them from its own table, the
way EC2 would. It is installed on the default boto3 session, so every client created
afterwards (the test's, the LRS's, the Lambda's) gets it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

REGION = "us-east-2"
OUR_ACCOUNT = "123456789012"  # moto's default account
OUR_CIDR = "10.0.0.0/16"
NLB_IP = "10.0.3.25"
PARTNER_ACCOUNT = "111122223333"  # the partner account the tests invite (partner_account()'s default)
ADMIN = "ak_admin0000000000"  # the admin key id the partner tests act as (the audit trail names it)
NLB_IP_B = "10.0.4.25"  # the UDP NLB's address in the second zone
NLB_ENI_DESCRIPTION = "ELB net/beast-udp/0123456789abcdef"


class _Raw:
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield b""


def _answer(parsed: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict[str, Any]]:
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "RequestId": "fake-endpoint-connections"})
    return AWSResponse("https://ec2.us-east-2.amazonaws.com/", status, {}, _Raw()), parsed


def _listed(body: dict[str, Any], prefix: str) -> list[str]:
    """`VpcEndpointId.1`, `VpcEndpointId.2`, … from an EC2 query body."""
    return [v for k, v in sorted(body.items()) if k.startswith(prefix + ".")]


@dataclass
class EndpointConnections:
    service_id: str
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def request(self, endpoint_id: str, owner: str) -> None:
        """A partner created an endpoint to our service: it waits for our acceptance."""
        self.connections[endpoint_id] = {
            "ServiceId": self.service_id,
            "VpcEndpointId": endpoint_id,
            "VpcEndpointOwner": owner,
            "VpcEndpointState": "pendingAcceptance",
            "VpcEndpointRegion": REGION,
            "CreationTimestamp": datetime.datetime.now(datetime.UTC),
            "DnsEntries": [{"DnsName": self.dns_name(endpoint_id), "HostedZoneId": "Z7HUB22UULQXV"}],
        }

    def dns_name(self, endpoint_id: str) -> str:
        """The endpoint's regional DNS name, as EC2 reports it in DnsEntries."""
        return f"{endpoint_id}-4gsq2hpc.{self.service_id}.{REGION}.vpce.amazonaws.com"

    def state(self, endpoint_id: str) -> str:
        return self.connections[endpoint_id]["VpcEndpointState"]

    def install(self, events: Any) -> None:
        events.register("before-call.ec2.DescribeVpcEndpointConnections", self._describe)
        events.register("before-call.ec2.AcceptVpcEndpointConnections", self._accept)
        events.register("before-call.ec2.RejectVpcEndpointConnections", self._reject)

    def _describe(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.calls.append("describe")
        body = params["body"]
        wanted = {
            v
            for k, v in body.items()
            if k.startswith("Filter.") and ".Value." in k and body[k.split(".Value.")[0] + ".Name"] == "service-id"
        }
        items = [dict(c) for c in self.connections.values() if not wanted or c["ServiceId"] in wanted]
        return _answer({"VpcEndpointConnections": items})

    def _change(self, params: dict[str, Any], to: str, allowed: tuple[str, ...]) -> tuple[AWSResponse, dict[str, Any]]:
        body = params["body"]
        if body.get("ServiceId") != self.service_id:
            return _answer(
                {"Error": {"Code": "InvalidVpcEndpointServiceId.NotFound", "Message": "no such service"}}, 400
            )
        unsuccessful = []
        for endpoint_id in _listed(body, "VpcEndpointId"):
            connection = self.connections.get(endpoint_id)
            if connection is None or connection["VpcEndpointState"] not in allowed:
                state = "missing" if connection is None else connection["VpcEndpointState"]
                unsuccessful.append(
                    {
                        "ResourceId": endpoint_id,
                        "Error": {"Code": "InvalidState", "Message": f"Endpoint {endpoint_id} is {state}"},
                    }
                )
                continue
            connection["VpcEndpointState"] = to
        return _answer({"Unsuccessful": unsuccessful})

    def _accept(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.calls.append("accept")
        return self._change(params, "available", ("pendingAcceptance",))

    def _reject(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.calls.append("reject")
        return self._change(params, "rejected", ("pendingAcceptance", "available"))


@dataclass
class PartnerAccount:
    """A partner's own AWS account (moto's STS gives another account id)."""

    account_id: str
    ec2: Any
    world: AwsWorld

    def vpc(self, cidr: str = "172.31.0.0/16") -> dict[str, str]:
        vpc_id = self.ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        base = cidr.split("/")[0].rsplit(".", 2)[0]
        subnet = self.ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base}.1.0/24")["Subnet"]["SubnetId"]
        tables = self.ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
        return {"vpc_id": vpc_id, "subnet_id": subnet, "route_table_id": tables[0]["RouteTableId"], "cidr": cidr}

    def request_endpoint(self, vpc: dict[str, str]) -> str:
        endpoint = self.ec2.create_vpc_endpoint(
            VpcEndpointType="Interface",
            VpcId=vpc["vpc_id"],
            ServiceName=self.world.service_name,
            SubnetIds=[vpc["subnet_id"]],
        )["VpcEndpoint"]["VpcEndpointId"]
        self.world.endpoints.request(endpoint, self.account_id)
        return endpoint

    def request_peering(self, vpc: dict[str, str]) -> str:
        return self.ec2.create_vpc_peering_connection(
            VpcId=vpc["vpc_id"], PeerVpcId=self.world.vpc_id, PeerOwnerId=OUR_ACCOUNT, PeerRegion=REGION
        )["VpcPeeringConnection"]["VpcPeeringConnectionId"]


@dataclass
class AwsWorld:
    ec2: Any
    vpc_id: str
    route_table_id: str
    security_group_id: str
    service_name: str
    service_id: str
    endpoints: EndpointConnections

    @property
    def env(self) -> dict[str, str]:
        """This stack's settings, as the LRS and the partners Lambda read them."""
        return {
            "BEAST_REGION": REGION,
            "BEAST_AWS_ACCOUNT_ID": OUR_ACCOUNT,
            "BEAST_PARTNER_SERVICE_NAME": self.service_name,
            "BEAST_VPC_ID": self.vpc_id,
            "BEAST_VPC_CIDR": OUR_CIDR,
            "BEAST_ROUTE_TABLE_ID": self.route_table_id,
            "BEAST_PARTNER_SECURITY_GROUP_ID": self.security_group_id,
            "BEAST_UDP_NLB_IP": NLB_IP,
        }

    def partner_account(self, account_id: str = PARTNER_ACCOUNT) -> PartnerAccount:
        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/partner", RoleSessionName="partner"
        )["Credentials"]
        ec2 = boto3.client(
            "ec2",
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        return PartnerAccount(account_id, ec2, self)

    def routes(self) -> dict[str, str]:
        table = self.ec2.describe_route_tables(RouteTableIds=[self.route_table_id])["RouteTables"][0]
        return {
            r["DestinationCidrBlock"]: r.get("VpcPeeringConnectionId") or r.get("GatewayId") for r in table["Routes"]
        }

    def udp_rules(self) -> set[tuple[str, int]]:
        group = self.ec2.describe_security_groups(GroupIds=[self.security_group_id])["SecurityGroups"][0]
        return {
            (r["CidrIp"], p["FromPort"])
            for p in group["IpPermissions"]
            if p["IpProtocol"] == "udp"
            for r in p["IpRanges"]
        }

    def peering_state(self, pcx: str) -> str:
        found = self.ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"]
        return found[0]["Status"]["Code"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    """moto with this stack's network, and the endpoint-connection calls moto lacks."""
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        boto3.setup_default_session(region_name=REGION)
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock=OUR_CIDR)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"][
            "SubnetId"
        ]
        nlb = boto3.client("elbv2", region_name=REGION).create_load_balancer(
            Name="beast-tcp", Subnets=[subnet], Type="network", Scheme="internal"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        service = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[nlb], AcceptanceRequired=True)[
            "ServiceConfiguration"
        ]
        table = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0][
            "RouteTableId"
        ]
        group = ec2.create_security_group(GroupName="beast-udp", Description="partner UDP", VpcId=vpc)["GroupId"]
        # The UDP NLB's network interfaces, one per zone (moto's NLBs have none): NLB_IP and its twin.
        for zone, cidr, ip in (("a", "10.0.3.0/24", NLB_IP), ("b", "10.0.4.0/24", NLB_IP_B)):
            udp_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")["Subnet"][
                "SubnetId"
            ]
            ec2.create_network_interface(SubnetId=udp_subnet, PrivateIpAddress=ip, Description=NLB_ENI_DESCRIPTION)
        endpoints = EndpointConnections(service["ServiceId"])
        endpoints.install(boto3.DEFAULT_SESSION.events)
        yield AwsWorld(ec2, vpc, table, group, service["ServiceName"], service["ServiceId"], endpoints)
    boto3.DEFAULT_SESSION = None
