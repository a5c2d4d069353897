"""Partner onboarding without AWS: CIDR rules, records, the wizard's commands (checked against
botocore's EC2 model) and an approval refused for want of the stack's settings. Both approval
flows end to end against moto are in tests/integration/test_partner_flows.py."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from partner_aws import ADMIN, NLB_IP, OUR_ACCOUNT, PARTNER_ACCOUNT, REGION
from trinity_beast.domain.partners.cidr import CidrError, CidrOverlap, check_access_cidr, check_partner_cidr, parse_cidr
from trinity_beast.domain.partners.model import PartnerError, new_partner
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import load_settings
from trinity_beast.services.partners.ec2 import Ec2Network
from trinity_beast.services.partners.service import PartnerService
from trinity_beast.services.partners.wizard import ENDPOINT_PLACEHOLDER, StackNetwork, commands
from trinity_beast.stores.db.sqlite import SqliteDatabase

# --- CIDR rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,message",
    [
        ("172.31.0.0", "expected an IPv4 network with a prefix length"),
        ("172.31.0.0/33", "expected an IPv4 network such as"),
        ("not a cidr/16", "expected an IPv4 network such as"),
        ("300.1.0.0/16", "expected an IPv4 network such as"),
        ("fd00::/48", "only IPv4 networks are supported"),
        ("172.31.5.0/16", "host bits are set; did you mean 172.31.0.0/16?"),
        ("", "expected an IPv4 network with a prefix length"),
    ],
)
def test_a_malformed_cidr_is_explained(raw: str, message: str) -> None:
    with pytest.raises(CidrError) as caught:
        parse_cidr(raw)
    assert message in str(caught.value) and caught.value.status == 400


def test_partner_cidr_rules() -> None:
    assert str(check_partner_cidr("172.31.0.0/16", "10.0.0.0/16")) == "172.31.0.0/16"
    with pytest.raises(CidrError, match="prefix length from /16 to /28"):
        check_partner_cidr("172.0.0.0/12", "10.0.0.0/16")
    with pytest.raises(CidrError, match="prefix length from /16 to /28"):
        check_partner_cidr("172.31.0.0/29", "10.0.0.0/16")
    for overlapping in ("10.0.4.0/24", "10.0.0.0/16"):
        with pytest.raises(CidrOverlap, match=re.escape("overlaps this stack's VPC 10.0.0.0/16")) as caught:
            check_partner_cidr(overlapping, "10.0.0.0/16")
        assert caught.value.status == 409
    with pytest.raises(CidrOverlap, match=re.escape("overlaps 172.31.0.0/16 of active partner 'Acme'")):
        check_partner_cidr("172.31.128.0/17", "10.0.0.0/16", [("Acme", "172.31.0.0/16")])


def test_udp_access_cidr_rules() -> None:
    assert str(check_access_cidr("198.51.100.0/24", "10.0.0.0/16")) == "198.51.100.0/24"
    assert str(check_access_cidr("198.51.100.7/32", "10.0.0.0/16")) == "198.51.100.7/32"
    with pytest.raises(CidrError, match="too wide"):
        check_access_cidr("0.0.0.0/0", "10.0.0.0/16")
    with pytest.raises(CidrOverlap, match="overlaps this stack's VPC"):
        check_access_cidr("10.0.0.0/8", "10.0.0.0/16")


# --- records ---------------------------------------------------------------------------

PRIVATELINK = {
    "name": "Acme Trading",
    "aws_account_id": PARTNER_ACCOUNT,
    "region": REGION,
    "connection_type": "privatelink",
    "vpc_id": "vpc-0a1b2c3d4e5f67890",
    "subnet_ids": ["subnet-0a1b2c3d4e5f67890", "subnet-1a1b2c3d4e5f67890"],
    "security_group_ids": ["sg-0a1b2c3d4e5f67890"],
}
PEERING = {
    "name": "Zeta Quant",
    "aws_account_id": PARTNER_ACCOUNT,
    "region": "eu-west-1",
    "connection_type": "peering",
    "vpc_id": "vpc-0b1b2c3d4e5f67890",
    "cidr": "172.31.0.0/16",
    "route_table_id": "rtb-0a1b2c3d4e5f67890",
}


@pytest.mark.parametrize(
    "change,status,message",
    [
        ({"name": ""}, 400, "name: required"),
        ({"aws_account_id": "12345"}, 400, "aws_account_id: expected an id like 123456789012"),
        ({"region": "Ohio"}, 400, "region: expected an id like us-east-2"),
        ({"connection_type": "vpn"}, 400, "connection_type: expected privatelink or peering"),
        ({"vpc_id": "vpc-xyz"}, 400, "vpc_id: expected an id like vpc-"),
        ({"subnet_ids": []}, 400, "subnet_ids: required"),
        ({"subnet_ids": ["subnet-nope"]}, 400, "subnet_ids: expected an id like subnet-"),
        ({"cidr": "172.31.0.0/16"}, 400, "cidr: only peering partners have a CIDR"),
        ({"connection_id": "pcx-0a1b2c3d4e5f67890"}, 400, "connection_id: a privatelink partner's id looks like vpce-"),
        ({"colour": "red"}, 400, "unknown field(s): colour"),
    ],
)
def test_partner_details_are_validated(change: dict, status: int, message: str) -> None:
    with pytest.raises(PartnerError) as caught:
        new_partner({**PRIVATELINK, **change}, "10.0.0.0/16", [])
    assert caught.value.status == status and message in caught.value.message


@pytest.mark.parametrize(
    "change,status,message",
    [
        ({"cidr": None}, 400, "cidr: required"),
        ({"cidr": "172.31.0.0"}, 400, "cidr: invalid CIDR"),
        ({"cidr": "172.31.0.1/16"}, 400, "did you mean 172.31.0.0/16?"),
        ({"cidr": "10.0.128.0/20"}, 409, "overlaps this stack's VPC"),
        ({"route_table_id": None}, 400, "route_table_id: required"),
    ],
)
def test_peering_details_are_validated(change: dict, status: int, message: str) -> None:
    with pytest.raises(PartnerError) as caught:
        new_partner({**PEERING, **change}, "10.0.0.0/16", [])
    assert caught.value.status == status and message in caught.value.message


def test_settings_for_the_stack_network_are_validated() -> None:
    assert load_settings({}).vpc_cidr == "10.0.0.0/16" and load_settings({}).vpc_id == ""
    good = load_settings(
        {"BEAST_VPC_ID": "vpc-0a1b2c3d4e5f67890", "BEAST_VPC_CIDR": "10.8.0.0/16", "BEAST_UDP_NLB_IP": "10.8.3.4"}
    )
    assert (good.vpc_id, good.vpc_cidr, good.udp_nlb_ip) == ("vpc-0a1b2c3d4e5f67890", "10.8.0.0/16", "10.8.3.4")
    for name, value, message in [
        ("BEAST_VPC_ID", "vpc-nope", "BEAST_VPC_ID: expected an id like vpc-"),
        ("BEAST_VPC_CIDR", "10.0.0.1/16", "BEAST_VPC_CIDR: invalid CIDR '10.0.0.1/16': host bits are set"),
        ("BEAST_AWS_ACCOUNT_ID", "12", "BEAST_AWS_ACCOUNT_ID: expected an id like 123456789012"),
        ("BEAST_ROUTE_TABLE_ID", "rt-1", "BEAST_ROUTE_TABLE_ID: expected an id like rtb-"),
        ("BEAST_PARTNER_SECURITY_GROUP_ID", "sg-", "BEAST_PARTNER_SECURITY_GROUP_ID: expected an id like sg-"),
        ("BEAST_UDP_NLB_IP", "10.0.0.300", "BEAST_UDP_NLB_IP: expected an IPv4 address"),
        (
            "BEAST_PARTNER_SERVICE_NAME",
            "vpce-svc-123",
            "BEAST_PARTNER_SERVICE_NAME: expected an id like com.amazonaws.vpce.",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings({name: value})
        assert str(caught.value).startswith(message), str(caught.value)


# --- the wizard's commands, against botocore's EC2 model ---------------------------------

STACK = StackNetwork(
    region=REGION,
    account_id=OUR_ACCOUNT,
    service_name="com.amazonaws.vpce.us-east-2.vpce-svc-0a1b2c3d4e5f67890",
    vpc_id="vpc-0c1b2c3d4e5f67890",
    vpc_cidr="10.0.0.0/16",
    route_table_id="rtb-0c1b2c3d4e5f67890",
    security_group_id="sg-0c1b2c3d4e5f67890",
    nlb_ip=NLB_IP,
    tcp_ports=(8080, 9090),
    udp_ports=(2679, 2680),
)
GLOBAL_OPTIONS = {"--region", "--query", "--output"}


@functools.cache
def ec2_model() -> Any:
    """botocore's EC2 model, loaded once (a few tenths of a second per load, for every command)."""
    return botocore.session.get_session().get_service_model("ec2")


def check_against_model(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse one `aws ec2 …` command; every flag must be a member of the operation's input."""
    model = ec2_model()
    assert argv[:2] == ["aws", "ec2"], argv
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    assert argv[2] in operations, f"unknown EC2 operation {argv[2]}"
    shape = model.operation_model(operations[argv[2]]).input_shape
    flags = {xform_name(name, "-"): name for name in shape.members}
    params: dict[str, Any] = {}
    i = 3
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--"), f"{argv[2]}: stray value {flag!r}"
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if flag in GLOBAL_OPTIONS:
            assert len(values) == 1
            continue
        assert flag[2:] in flags, f"{argv[2]} has no parameter {flag}"
        member = flags[flag[2:]]
        member_shape = shape.members[member]
        assert values, f"{argv[2]} {flag} has no value"
        if member_shape.type_name == "list":
            value: Any = values
            if values[0].startswith("["):
                value = json.loads(values[0])
                check_shape(member_shape, value, f"{argv[2]} {flag}")
        else:
            assert len(values) == 1
            value = values[0]
        params[member] = value
    missing = [m for m in shape.required_members if m not in params]
    assert not missing, f"{argv[2]} misses required {missing}"
    return operations[argv[2]], params


def check_shape(shape: Any, value: Any, where: str) -> None:
    if shape.type_name == "list":
        assert isinstance(value, list), where
        for item in value:
            check_shape(shape.member, item, where)
    elif shape.type_name == "structure":
        assert isinstance(value, dict), where
        for name, item in value.items():
            assert name in shape.members, f"{where}: no member {name}"
            check_shape(shape.members[name], item, f"{where}.{name}")
    elif shape.type_name == "integer":
        assert isinstance(value, int), where
    else:
        assert isinstance(value, str), where


@pytest.mark.parametrize("connection_id", [None, "known"])
@pytest.mark.parametrize("details", [PRIVATELINK, PEERING], ids=["privatelink", "peering"])
def test_every_wizard_command_matches_the_ec2_model(details: dict, connection_id: str | None) -> None:
    body = dict(details)
    if connection_id:
        body["connection_id"] = "vpce-0d1b2c3d4e5f67890" if details is PRIVATELINK else "pcx-0d1b2c3d4e5f67890"
    partner = new_partner(body, "10.0.0.0/16", [])
    made = commands(partner, STACK)
    parsed = []
    for command in made:
        argv = shlex.split(command.shell)  # what a shell gives the CLI when the line is pasted
        assert argv == list(command.argv)
        parsed.append((command.side, *check_against_model(argv)))
        assert command.complete == (
            connection_id is not None or (ENDPOINT_PLACEHOLDER not in argv and "<" not in command.shell)
        )
    ops = [(side, op) for side, op, _ in parsed]
    if details is PRIVATELINK:
        assert ops == [("partner", "CreateVpcEndpoint"), ("operator", "AcceptVpcEndpointConnections")]
        create = parsed[0][2]
        assert create["ServiceName"] == STACK.service_name and create["SubnetIds"] == PRIVATELINK["subnet_ids"]
        assert parsed[1][2]["ServiceId"] == "vpce-svc-0a1b2c3d4e5f67890"
        assert parsed[1][2]["VpcEndpointIds"] == [body.get("connection_id", ENDPOINT_PLACEHOLDER)]
    else:
        assert ops == [
            ("partner", "CreateVpcPeeringConnection"),
            ("partner", "CreateRoute"),
            ("operator", "AcceptVpcPeeringConnection"),
            ("operator", "CreateRoute"),
            ("operator", "AuthorizeSecurityGroupIngress"),
            ("operator", "AuthorizeSecurityGroupIngress"),
        ]
        request = parsed[0][2]
        assert (request["PeerVpcId"], request["PeerOwnerId"], request["PeerRegion"]) == (
            STACK.vpc_id,
            OUR_ACCOUNT,
            REGION,
        )
        # Our VPC, not one NLB address /32: the UDP NLB has an address per zone, all inside the VPC.
        assert parsed[1][2]["DestinationCidrBlock"] == STACK.vpc_cidr == "10.0.0.0/16"
        assert ipaddress.ip_address(NLB_IP) in ipaddress.ip_network(parsed[1][2]["DestinationCidrBlock"])
        assert "/32" not in made[1].shell and "every zone" in made[1].title
        assert parsed[1][2]["RouteTableId"] == PEERING["route_table_id"]
        assert parsed[3][2] == {
            "RouteTableId": STACK.route_table_id,
            "DestinationCidrBlock": "172.31.0.0/16",
            "VpcPeeringConnectionId": body.get("connection_id", "<VPC_PEERING_CONNECTION_ID>"),
        }
        rules = [p for _, _, params in parsed[4:] for p in params["IpPermissions"]]
        assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r["IpRanges"][0]["CidrIp"]) for r in rules] == [
            ("udp", 2679, 2679, "172.31.0.0/16"),
            ("udp", 2680, 2680, "172.31.0.0/16"),
        ]
        for _side, _, params in parsed:
            assert "--region" not in params
        regions = [cmd.argv[cmd.argv.index("--region") + 1] for cmd in made]
        assert regions == ["eu-west-1", "eu-west-1", REGION, REGION, REGION, REGION]


def test_cross_region_privatelink_names_the_service_region() -> None:
    partner = new_partner({**PRIVATELINK, "region": "us-west-2"}, "10.0.0.0/16", [])
    _, params = check_against_model(list(commands(partner, STACK)[0].argv))
    assert params["ServiceRegion"] == REGION


# --- without the stack's network settings ------------------------------------------------


def test_approval_needs_the_stack_settings(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "b.db")
    db.migrate()
    settings = load_settings({"BEAST_DATA_DIR": str(tmp_path)})
    service = PartnerService(
        db, StackNetwork.from_settings(settings), lambda: Ec2Network(None, StackNetwork.from_settings(settings))
    )
    partner, _ = service.create(PRIVATELINK, ADMIN)  # records need no AWS
    with pytest.raises(PartnerError) as caught:
        service.onboarding(partner)
    assert caught.value.status == 503 and "BEAST_PARTNER_SERVICE_NAME" in caught.value.message
    with pytest.raises(PartnerError) as caught:
        service.approve(partner.id, ADMIN, "vpce-0d1b2c3d4e5f67890")
    assert caught.value.status == 503 and "partner network not configured" in caught.value.message
    db.close()
