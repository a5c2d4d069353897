"""Partner onboarding, both approval flows end to end: PartnerService with its database against
EC2 in moto (this stack's VPC, NLB and endpoint service, and partner accounts that ask to
connect). The rules, records and wizard commands alone are in tests/unit/test_partners.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from partner_aws import ADMIN, PARTNER_ACCOUNT, REGION, AwsWorld, aws  # noqa: F401 (fixture)
from trinity_beast.domain.partners.model import PartnerError
from trinity_beast.domain.settings import load_settings
from trinity_beast.services.partners.ec2 import Ec2Network
from trinity_beast.services.partners.service import PartnerService
from trinity_beast.services.partners.wizard import StackNetwork
from trinity_beast.stores.db.sqlite import SqliteDatabase


@pytest.fixture
def service(aws: AwsWorld, tmp_path: Path):
    db = SqliteDatabase(tmp_path / "beast.db")
    db.migrate()
    settings = load_settings({**aws.env, "BEAST_DATA_DIR": str(tmp_path)})
    yield PartnerService(db, StackNetwork.from_settings(settings), lambda: Ec2Network.from_settings(settings))
    db.close()


def privatelink_body(vpc: dict[str, str], name: str = "Acme Trading", account: str = PARTNER_ACCOUNT) -> dict:
    return {
        "name": name,
        "aws_account_id": account,
        "region": REGION,
        "connection_type": "privatelink",
        "vpc_id": vpc["vpc_id"],
        "subnet_ids": [vpc["subnet_id"]],
    }


def peering_body(vpc: dict[str, str], name: str = "Zeta Quant", account: str = PARTNER_ACCOUNT) -> dict:
    return {
        "name": name,
        "aws_account_id": account,
        "region": REGION,
        "connection_type": "peering",
        "vpc_id": vpc["vpc_id"],
        "cidr": vpc["cidr"],
        "route_table_id": vpc["route_table_id"],
    }


def actions(service: PartnerService, partner_id: str) -> list[str]:
    return [e.action for e in service.audit(partner_id)]


def test_privatelink_flow_end_to_end(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc()
    partner, secret = service.create(privatelink_body(vpc), ADMIN)
    assert partner.status == "invited" and secret.startswith("tbk_")
    key = service.db.key_by_id(partner.api_key_id)
    assert key is not None and key.tier == "partner" and key.unlimited and key.active

    endpoint = account.request_endpoint(vpc)
    [request] = service.pending()
    assert request["connection_id"] == endpoint and request["owner_account"] == PARTNER_ACCOUNT
    assert request["partner"] == {"id": partner.id, "name": "Acme Trading", "status": "invited"}

    pending = service.register(partner.id, endpoint, ADMIN)
    assert pending.status == "pending" and pending.connection_id == endpoint
    assert service.register(partner.id, endpoint, ADMIN) == pending  # the same registration again
    onboarding = service.onboarding(pending)
    assert onboarding["complete"] and endpoint in onboarding["commands"][1]["command"]

    active, changed = service.approve(partner.id, ADMIN)
    assert (active.status, changed) == ("active", True) and aws.endpoints.state(endpoint) == "available"
    assert service.pending() == []
    again, changed = service.approve(partner.id, ADMIN)  # double accept: no harm, no second accept call
    assert (again.status, changed) == ("active", False) and aws.endpoints.calls.count("accept") == 1

    with pytest.raises(PartnerError, match="revoke it instead"):
        service.reject(partner.id, ADMIN)
    revoked, changed, remain = service.revoke(partner.id, ADMIN, "contract ended")
    assert (revoked.status, changed, remain) == ("revoked", True, []) and aws.endpoints.state(endpoint) == "rejected"
    assert not service.db.key_by_id(partner.api_key_id).active
    assert service.revoke(partner.id, ADMIN)[1] is False  # revoking twice does nothing more
    with pytest.raises(PartnerError) as caught:
        service.approve(partner.id, ADMIN)
    assert caught.value.status == 409 and "onboard it again" in caught.value.message
    assert actions(service, partner.id) == ["create", "register", "approve", "approve", "revoke"]
    assert service.audit(partner.id)[-1].detail == {"reason": "contract ended", "disconnected": True}


def test_peering_flow_end_to_end(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    partner, _ = service.create(peering_body(vpc), ADMIN)
    pcx = account.request_peering(vpc)
    [request] = service.pending()
    assert (request["kind"], request["connection_id"], request["vpc_id"], request["cidr"]) == (
        "peering",
        pcx,
        vpc["vpc_id"],
        vpc["cidr"],
    )

    active, changed = service.approve(partner.id, ADMIN)  # finds the one pending request from the account
    assert (active.status, active.connection_id, changed) == ("active", pcx, True)
    assert aws.peering_state(pcx) == "active"
    assert aws.routes()["172.31.0.0/16"] == pcx
    assert aws.udp_rules() == {("172.31.0.0/16", 2679), ("172.31.0.0/16", 2680)}
    assert [r["cidr"] for r in service.udp_access()] == ["172.31.0.0/16"]
    assert service.udp_access()[0]["partner"] == {"id": partner.id, "name": "Zeta Quant", "status": "active"}

    again, changed = service.approve(partner.id, ADMIN, pcx)  # double accept
    assert (again.status, changed) == ("active", False)
    assert aws.udp_rules() == {("172.31.0.0/16", 2679), ("172.31.0.0/16", 2680)}

    with pytest.raises(PartnerError, match="revoke the partner to close it"):
        service.deny_udp("172.31.0.0/16", ADMIN)
    revoked, _, remain = service.revoke(partner.id, ADMIN)
    assert revoked.status == "revoked"
    # What stays is said: the partner's own route lives in their account.
    assert [(p.kind, p.id) for p in remain] == [("partner_route", vpc["route_table_id"])]
    assert "172.31.0.0/16" not in aws.routes() and aws.udp_rules() == set()
    assert aws.peering_state(pcx) == "deleted"
    assert not service.db.key_by_id(partner.api_key_id).active
    assert actions(service, partner.id) == ["create", "register", "approve", "approve", "revoke"]
    approve = service.audit(partner.id)[2].detail
    assert approve == {"connection_id": pcx, "accepted": True, "route_added": True, "udp_opened": True}


def test_reject_both_kinds_of_request(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc_a, vpc_b = account.vpc("172.31.0.0/16"), account.vpc("172.30.0.0/16")
    linked, _ = service.create(privatelink_body(vpc_a), ADMIN)
    endpoint = account.request_endpoint(vpc_a)
    peered, _ = service.create(peering_body(vpc_b), ADMIN)
    pcx = account.request_peering(vpc_b)
    service.register(peered.id, pcx, ADMIN)

    rejected, changed, _ = service.reject(linked.id, ADMIN, "not a customer")  # invited, request seen
    assert (rejected.status, changed) == ("rejected", True)
    assert aws.endpoints.state(endpoint) == "rejected"  # the one request from its account goes too
    rejected, changed, _ = service.reject(peered.id, ADMIN)
    assert (rejected.status, changed) == ("rejected", True) and aws.peering_state(pcx) == "rejected"
    assert service.reject(peered.id, ADMIN)[1] is False  # rejecting twice: no change
    assert not service.db.key_by_id(peered.api_key_id).active and not service.db.key_by_id(linked.api_key_id).active
    with pytest.raises(PartnerError, match="is rejected: only an invited partner takes a connection id"):
        service.register(linked.id, endpoint, ADMIN)

    # A request no partner claims is rejected on its own.
    stranger = aws.partner_account("444455556666")
    unknown = stranger.request_endpoint(stranger.vpc("172.20.0.0/16"))
    assert service.reject_request(unknown, ADMIN) is True
    assert aws.endpoints.state(unknown) == "rejected" and service.pending() == []
    assert service.audit()[-1].action == "reject_request"


def test_requests_must_come_from_the_partner(service: PartnerService, aws: AwsWorld) -> None:
    ours, stranger = aws.partner_account(), aws.partner_account("444455556666")
    vpc, strange_vpc = ours.vpc(), stranger.vpc("172.20.0.0/16")
    partner, _ = service.create(privatelink_body(vpc), ADMIN)
    foreign = stranger.request_endpoint(strange_vpc)
    with pytest.raises(PartnerError) as caught:
        service.register(partner.id, foreign, ADMIN)
    assert caught.value.status == 409 and "comes from account 444455556666" in caught.value.message
    with pytest.raises(PartnerError, match="no request from account 111122223333"):
        service.approve(partner.id, ADMIN)
    with pytest.raises(PartnerError) as caught:
        service.register(partner.id, "vpce-0000000000000000f", ADMIN)
    assert caught.value.status == 404
    with pytest.raises(PartnerError) as caught:
        service.register(partner.id, "pcx-0000000000000000f", ADMIN)
    assert caught.value.status == 400
    with pytest.raises(PartnerError) as caught:
        service.get("pt_doesnotexist")
    assert caught.value.status == 404 and "unknown partner" in caught.value.message
    [request] = service.pending()
    assert request["partner"] is None  # someone we never invited


def test_every_cidr_error_on_the_flow(service: PartnerService, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    first, _ = service.create(peering_body(vpc, "First"), ADMIN)
    second, _ = service.create(peering_body(vpc, "Second"), ADMIN)  # nobody active yet: allowed
    service.approve(first.id, ADMIN, account.request_peering(vpc))
    for cidr, status, message in [
        ("172.31.0.0/16", 409, "overlaps 172.31.0.0/16 of active partner 'First'"),
        ("172.31.64.0/18", 409, "overlaps 172.31.0.0/16 of active partner 'First'"),
        ("10.0.0.0/24", 409, "overlaps this stack's VPC 10.0.0.0/16"),
        ("172.32.0.0", 400, "expected an IPv4 network with a prefix length"),
        ("172.32.0.1/16", 400, "host bits are set"),
        ("2001:db8::/48", 400, "only IPv4 networks"),
        ("172.0.0.0/8", 400, "prefix length from /16 to /28"),
    ]:
        with pytest.raises(PartnerError) as caught:
            service.create({**peering_body(vpc, "Third"), "cidr": cidr}, ADMIN)
        assert (caught.value.status, message in caught.value.message) == (status, True), caught.value.message
    with pytest.raises(PartnerError) as caught:  # its CIDR became taken after it was invited
        service.approve(second.id, ADMIN, account.request_peering(vpc))
    assert caught.value.status == 409 and "cannot approve" in caught.value.message
    assert service.get(second.id).status == "pending"  # registered, not accepted
    assert [p.name for p in service.list()] == ["First", "Second"]


def test_udp_access_entries(service: PartnerService, aws: AwsWorld) -> None:
    assert service.udp_access() == []
    assert service.allow_udp("198.51.100.0/24", "office", ADMIN)["changed"] is True
    again = service.allow_udp("198.51.100.0/24", "office", ADMIN)
    assert again == {"changed": False, "description": {"typed": "office", "stored": "office", "changed": False}}
    assert aws.udp_rules() == {("198.51.100.0/24", 2679), ("198.51.100.0/24", 2680)}
    assert service.udp_access() == [
        {"cidr": "198.51.100.0/24", "ports": [2679, 2680], "description": "office", "partner": None, "orphaned": False}
    ]
    for bad, status in (
        ("198.51.100.0", 400),
        ("198.51.100.1/24", 400),
        ("0.0.0.0/0", 400),
        ("10.0.2.0/24", 409),
        (None, 400),
    ):
        with pytest.raises(PartnerError) as caught:
            service.allow_udp(bad, "", ADMIN)
        assert caught.value.status == status
    assert service.deny_udp("198.51.100.0/24", ADMIN) is True
    assert service.deny_udp("198.51.100.0/24", ADMIN) is False
    assert aws.udp_rules() == set()
    assert [e.action for e in service.audit()] == ["udp_allow", "udp_allow", "udp_deny", "udp_deny"]
