"""The partner record follows EC2: what an operator did by hand with the wizard's commands is
adopted, what disagrees is reported as drift, and revoke/reject leave nothing of theirs behind
(or say what stays and why). EC2 in moto (partner_aws)."""

from __future__ import annotations

import threading

import pytest
from test_partner_flows import ADMIN, PARTNER_ACCOUNT, actions, peering_body, privatelink_body, service  # noqa: F401

from partner_aws import NLB_IP, NLB_IP_B, REGION, AwsWorld, aws  # noqa: F401 (fixture)
from trinity_beast.domain.partners.model import PartnerError, new_partner
from trinity_beast.services.partners.service import PartnerService
from trinity_beast.services.partners.wizard import rule_description


def by_hand(aws: AwsWorld, pcx: str, cidr: str, description: str) -> None:
    """The operator runs the wizard's "You run" commands in a shell instead of approving."""
    aws.ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    aws.ec2.create_route(RouteTableId=aws.route_table_id, DestinationCidrBlock=cidr, VpcPeeringConnectionId=pcx)
    for port in (2679, 2680):
        aws.ec2.authorize_security_group_ingress(
            GroupId=aws.security_group_id,
            IpPermissions=[
                {
                    "IpProtocol": "udp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": cidr, "Description": description}],
                }
            ],
        )


def test_an_approval_done_by_hand_is_adopted(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    partner, _ = service.create(peering_body(vpc), ADMIN)
    pcx = account.request_peering(vpc)
    by_hand(aws, pcx, vpc["cidr"], rule_description(partner))
    assert service.get(partner.id).status == "invited"  # the record has not followed yet

    [result] = service.reconcile(ADMIN)
    assert result["partner"]["status"] == "active" and result["partner"]["connection_id"] == pcx
    assert result["adopted"] == [f"{pcx} (active in EC2): now active"] and result["drift"] == []
    assert actions(service, partner.id) == ["create", "adopt"]
    assert service.reconcile(ADMIN)[0]["adopted"] == []  # nothing more to adopt

    # Approving afterwards is a success that changes nothing, not a 409.
    again, changed = service.approve(partner.id, ADMIN)
    assert (again.status, changed) == ("active", False)

    # The rule the operator added traces back to the partner, and revoking removes it all.
    assert service.udp_access()[0]["partner"]["id"] == partner.id
    _revoked, changed, remain = service.revoke(partner.id, ADMIN, "test over")
    assert changed and [p.kind for p in remain] == ["partner_route"]
    assert aws.udp_rules() == set() and vpc["cidr"] not in aws.routes() and aws.peering_state(pcx) == "deleted"
    assert service.reconcile(ADMIN)[0]["drift"] == []


def test_approve_adopts_a_request_accepted_by_hand(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    partner, _ = service.create(peering_body(vpc), ADMIN)
    pcx = account.request_peering(vpc)
    aws.ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)  # only the accept, by hand
    active, changed = service.approve(partner.id, ADMIN)  # no connection_id: found although not pending
    assert (active.status, active.connection_id, changed) == ("active", pcx, True)
    assert aws.routes()[vpc["cidr"]] == pcx and aws.udp_rules() == {(vpc["cidr"], 2679), (vpc["cidr"], 2680)}


def test_drift_is_reported_with_its_fix(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    partner, _ = service.create(peering_body(vpc), ADMIN)
    pcx = account.request_peering(vpc)
    service.approve(partner.id, ADMIN)
    aws.ec2.delete_route(RouteTableId=aws.route_table_id, DestinationCidrBlock=vpc["cidr"])
    aws.ec2.revoke_security_group_ingress(
        GroupId=aws.security_group_id,
        IpPermissions=[{"IpProtocol": "udp", "FromPort": 2680, "ToPort": 2680, "IpRanges": [{"CidrIp": vpc["cidr"]}]}],
    )
    [result] = service.reconcile(ADMIN)
    assert [(d["kind"], d["id"]) for d in result["drift"]] == [("route", vpc["cidr"]), ("udp", vpc["cidr"])]
    assert "approve again" in result["drift"][0]["message"] and "UDP 2680" in result["drift"][1]["message"]
    service.approve(partner.id, ADMIN)  # repairs
    assert service.reconcile(ADMIN)[0]["drift"] == []

    # A revoke whose clean-up was undone by hand: drift on a revoked partner; revoking again removes it.
    service.revoke(partner.id, ADMIN)
    aws.ec2.authorize_security_group_ingress(
        GroupId=aws.security_group_id,
        IpPermissions=[{"IpProtocol": "udp", "FromPort": 2679, "ToPort": 2679, "IpRanges": [{"CidrIp": vpc["cidr"]}]}],
    )
    [result] = service.reconcile(ADMIN)
    assert [d["kind"] for d in result["drift"]] == ["udp"] and "revoke again" in result["drift"][0]["message"]
    plan = service.teardown_plan(partner.id)
    assert [p["kind"] for p in plan["remove"]] == ["udp"]
    _, changed, _ = service.revoke(partner.id, ADMIN)
    assert changed and aws.udp_rules() == set() and service.reconcile(ADMIN)[0]["drift"] == []
    assert actions(service, partner.id)[-1] == "revoke_cleanup"
    assert pcx


def test_teardown_plan_names_every_piece(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    partner, _ = service.create(peering_body(vpc), ADMIN)
    pcx = account.request_peering(vpc)
    service.approve(partner.id, ADMIN)
    plan = service.teardown_plan(partner.id)
    assert [(p["kind"], p["id"]) for p in plan["remove"]] == [
        ("route", vpc["cidr"]),
        ("udp", vpc["cidr"]),
        ("connection", pcx),
    ]
    assert [p["kind"] for p in plan["remain"]] == ["partner_route"] and "their account" in plan["remain"][0]["message"]
    assert plan["key"] == f"API key {partner.api_key_id} stops working"
    # Read-only: nothing changed.
    assert aws.peering_state(pcx) == "active" and service.get(partner.id).status == "active"


def test_a_double_approve_answers_success_twice(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc()
    partner, _ = service.create(privatelink_body(vpc), ADMIN)
    endpoint = account.request_endpoint(vpc)
    results: list[object] = []

    def click() -> None:
        try:
            results.append(service.approve(partner.id, ADMIN, endpoint)[0].status)
        except PartnerError as exc:  # pragma: no cover - the failure this test exists for
            results.append(exc)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["active", "active"] and aws.endpoints.calls.count("accept") == 1


def test_an_accept_that_lost_the_race_is_no_failure(service: PartnerService, aws: AwsWorld) -> None:
    """Another process accepted between our read and our call: EC2 answers InvalidState."""
    account = aws.partner_account()
    vpc = account.vpc()
    partner, _ = service.create(privatelink_body(vpc), ADMIN)
    endpoint = account.request_endpoint(vpc)
    service.register(partner.id, endpoint, ADMIN)
    real_find = service.network.find
    seen = {"n": 0}

    def stale_find(kind: str, cid: str):  # the first read is from before the other accept
        seen["n"] += 1
        found = real_find(kind, cid)
        if seen["n"] == 2:
            aws.endpoints.connections[endpoint]["VpcEndpointState"] = "available"
        return found

    service.network.find = stale_find  # type: ignore[method-assign]
    active, _changed = service.approve(partner.id, ADMIN)
    assert active.status == "active" and aws.endpoints.state(endpoint) == "available"


def test_every_field_error_at_once() -> None:
    with pytest.raises(PartnerError) as caught:
        new_partner(
            {
                "name": "",
                "aws_account_id": "12345",
                "region": "mars-1",
                "connection_type": "peering",
                "vpc_id": "vpc-1",
                "cidr": "172.31.0.1/16",
            },
            "10.0.0.0/16",
            [],
        )
    fields = [e["field"] for e in caught.value.data["errors"]]
    assert fields == ["name", "aws_account_id", "region", "vpc_id", "cidr", "route_table_id"]
    assert caught.value.status == 400 and all(caught.value.message.count(f"{f}: ") for f in fields)


def test_a_preview_id_carries_into_the_creation(service: PartnerService, aws: AwsWorld) -> None:
    vpc = aws.partner_account().vpc()
    preview = service.preview(peering_body(vpc))
    body = {**peering_body(vpc), "id": preview["partner_id"]}
    assert service.preview(body)["partner_id"] == preview["partner_id"]
    partner, _ = service.create(body, ADMIN)
    assert partner.id == preview["partner_id"]
    rules = [c["command"] for c in service.onboarding(partner)["commands"] if "authorize" in c["command"]]
    assert all(partner.id in r for r in rules)
    with pytest.raises(PartnerError) as caught:
        service.create(body, ADMIN)
    assert caught.value.status == 409 and "exists already" in caught.value.message
    with pytest.raises(PartnerError) as caught:
        service.preview({**body, "id": "pt_../../etc"})
    assert caught.value.status == 400


def test_the_handoff_sheet(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    peered, _ = service.create(peering_body(vpc), ADMIN)
    sheet = service.handoff(peered.id)
    ref = {r["label"]: r["value"] for r in sheet["reference"]}
    assert ref["Our VPC"] == aws.vpc_id and ref["Our route table"] == aws.route_table_id
    assert ref["Our security group (UDP)"] == aws.security_group_id
    # Every zone's address, found from the configured one (its interface names the NLB).
    assert ref["UDP load balancer addresses"] == f"{NLB_IP} ({REGION}a), {NLB_IP_B} ({REGION}b)"
    assert "nc -u" in sheet["examples"][0]["command"] and "2679" in sheet["examples"][0]["command"]
    assert "every Availability Zone" in sheet["notes"][0] and "10.0.0.0/16" in sheet["notes"][0]
    assert "Wait for us to accept" in sheet["markdown"] and "| Our VPC CIDR | `10.0.0.0/16` |" in sheet["markdown"]
    linked, _ = service.create(privatelink_body(account.vpc("172.30.0.0/16"), "Linked"), ADMIN)
    sheet = service.handoff(linked.id)
    assert sheet["examples"][0]["command"].startswith('curl -H "Authorization: Bearer $TRINITY_BEAST_KEY"')
    assert sheet["examples"][1]["command"].startswith("wscat -c") and "/ws/prices" in sheet["examples"][1]["command"]
    ref = {r["label"]: r["value"] for r in sheet["reference"]}
    assert ref["Endpoint service id"] == aws.service_id and ref["Endpoint service name"] == aws.service_name
    service.revoke(linked.id, ADMIN)
    with pytest.raises(PartnerError) as caught:
        service.handoff(linked.id)
    assert caught.value.status == 409
    with pytest.raises(PartnerError, match="no onboarding commands"):
        service.onboarding_of(linked.id)
    assert REGION and PARTNER_ACCOUNT


def test_the_handoff_says_when_ec2_does_not_list_the_nlb_addresses(service: PartnerService, aws: AwsWorld) -> None:
    import boto3
    from botocore.exceptions import ClientError

    def denied(**_: object) -> None:
        raise ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"}}, "DescribeNetworkInterfaces"
        )

    vpc = aws.partner_account().vpc("172.31.0.0/16")
    peered, _ = service.create(peering_body(vpc), ADMIN)
    boto3.DEFAULT_SESSION.events.register_first("before-call.ec2.DescribeNetworkInterfaces", denied)
    service._network = None  # a client made after the hook
    ref = {r["label"]: r["value"] for r in service.handoff(peered.id)["reference"]}
    assert ref["UDP load balancer addresses"] == f"{NLB_IP} (the other zones' addresses: EC2 did not list them)"


def test_without_the_network_settings_nothing_pretends_ec2_was_read(tmp_path) -> None:
    """No BEAST_VPC_ID / service name: answers that would come from EC2 are 503s naming what to
    set, and a revoke says what it could not check, instead of an empty "nothing there"."""
    from trinity_beast.domain.settings import load_settings
    from trinity_beast.services.partners.ec2 import Ec2Network
    from trinity_beast.services.partners.wizard import StackNetwork
    from trinity_beast.stores.db.sqlite import SqliteDatabase

    db = SqliteDatabase(tmp_path / "beast.db")
    db.migrate()
    settings = load_settings({"BEAST_DATA_DIR": str(tmp_path)})
    bare = PartnerService(db, StackNetwork.from_settings(settings), lambda: Ec2Network.from_settings(settings))
    vpc = {
        "vpc_id": "vpc-0def5678",
        "subnet_id": "subnet-0abc1234",
        "cidr": "172.31.0.0/16",
        "route_table_id": "rtb-0abc1234",
    }
    partner, _ = bare.create(peering_body(vpc), ADMIN)
    for call in (lambda: bare.approve(partner.id, ADMIN), bare.pending, lambda: bare.reconcile(ADMIN)):
        with pytest.raises(PartnerError, match=r"^partner network not configured: set .*BEAST_VPC_ID") as caught:
            call()
        assert caught.value.status == 503
    plan = bare.teardown_plan(partner.id)
    assert plan["remove"] == [] and "EC2 was not read" in plan["remain"][0]["message"]
    revoked, _, remain = bare.revoke(partner.id, ADMIN, "no network")
    assert revoked.status == "revoked" and "EC2 was not read" in remain[0].message
    db.close()
