"""The partners Lambda, invoked as `sam local invoke -e events/partners_*.json` would, over
real PostgreSQL and Redis, with EC2 in moto: every partners event file is answered."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import UNREACHABLE_EXCHANGES

from partner_aws import AwsWorld, aws  # noqa: F401 (fixture)
from samlocal import REPO, invoke

EVENTS = REPO / "events"
PARTNER_EVENTS = sorted(p.name for p in EVENTS.glob("partners_*.json"))


@pytest.fixture
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, aws: AwsWorld):
    from trinity_beast.domain.keys import new_key
    from trinity_beast.stores.db.postgres import PostgresDatabase

    env = {
        **aws.env,
        **UNREACHABLE_EXCHANGES,
        "BEAST_PREWARM": "false",
        "REDIS_URL": request.getfixturevalue("redis_url"),
        "BEAST_REDIS_NAMESPACE": request.getfixturevalue("redis_namespace"),
        "DATABASE_URL": request.getfixturevalue("pg_url"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    db = PostgresDatabase(env["DATABASE_URL"])
    db.migrate()
    keys = {}
    for tier in ("admin", "subscriber"):
        key, secret = new_key(tier, tier)
        db.insert_key(key)
        keys[tier] = secret
    yield keys, db
    db.close()


def event(name: str, secret: str, partner_id: str | None = None, body: dict | None = None) -> dict[str, Any]:
    """An events/ file with a real key, and the partner id or body this run needs."""
    e = json.loads((EVENTS / name).read_text())
    e["headers"]["Authorization"] = e["multiValueHeaders"]["Authorization"][0] = f"Bearer {secret}"
    if partner_id is not None:
        e["path"] = e["path"].replace("pt_0123456789abcdef", partner_id)
        e["pathParameters"]["id"] = partner_id
    if body is not None:
        e["body"] = json.dumps(body)
    return e


def call(name: str, secret: str, status: int = 200, **kw: Any) -> dict[str, Any]:
    result = invoke("PartnersFunction", event(name, secret, **kw))
    body = json.loads(result["body"])
    assert result["statusCode"] == status, result["body"]
    assert body["status"].startswith("✅ [LRS]" if status < 400 else "❌ [LRS]") and body["status_code"] == status
    return body


def test_every_partners_event_is_answered(stack, aws: AwsWorld) -> None:
    keys, db = stack
    admin = keys["admin"]
    used: set[str] = set()

    def run(name: str, status: int = 200, **kw: Any) -> dict[str, Any]:
        used.add(name)
        return call(name, admin, status, **kw)["data"]

    account = aws.partner_account()
    vpc = account.vpc()
    template = json.loads(json.loads((EVENTS / "partners_create_privatelink.json").read_text())["body"])
    created = run(
        "partners_create_privatelink.json",
        201,
        body={**template, "vpc_id": vpc["vpc_id"], "subnet_ids": [vpc["subnet_id"]]},
    )
    partner_id = created["partner"]["id"]
    assert created["api_key"]["key"].startswith("tbk_") and created["onboarding"]["commands"]
    assert db.key_by_id(created["api_key"]["id"]).tier == "partner"

    endpoint = account.request_endpoint(vpc)
    assert [r["connection_id"] for r in run("partners_pending.json")["requests"]] == [endpoint]
    assert run("partners_list.json")["count"] == 1
    assert run("partners_get.json", partner_id=partner_id)["partner"]["status"] == "invited"
    approved = run("partners_approve.json", partner_id=partner_id, body={"connection_id": endpoint})
    assert approved["partner"]["status"] == "active" and aws.endpoints.state(endpoint) == "available"
    again = run("partners_approve.json", partner_id=partner_id, body={"connection_id": endpoint})
    assert again["changed"] is False
    revoked = run("partners_revoke.json", partner_id=partner_id)
    assert revoked["partner"]["status"] == "revoked" and aws.endpoints.state(endpoint) == "rejected"
    assert db.key_by_id(created["api_key"]["id"]).revoked_at is not None

    peering = run("partners_create_peering.json", 201)  # the file as it is: ids need no AWS until approval
    assert peering["partner"]["cidr"] == "172.31.0.0/16" and len(peering["onboarding"]["commands"]) == 6
    assert run("partners_udp_add.json")["changed"] is True
    assert aws.udp_rules() == {("198.51.100.0/24", 2679), ("198.51.100.0/24", 2680)}
    assert run("partners_udp_remove.json")["changed"] is True and aws.udp_rules() == set()
    assert used == set(PARTNER_EVENTS)

    trail = db.audit_trail()
    assert [e.action for e in trail] == [
        "create",
        "register",
        "approve",
        "approve",
        "revoke",
        "create",
        "udp_allow",
        "udp_deny",
    ]


def test_the_lambda_refuses_like_the_lrs(stack) -> None:
    keys, _ = stack
    assert "admin key" in call("partners_list.json", keys["subscriber"], 403)["error"]
    assert call("partners_list.json", "tbk_not_a_real_key_at_all", 401)["error"] == "invalid API key"
    assert "unknown partner" in call("partners_get.json", keys["admin"], 404)["error"]
    bad = event("partners_create_peering.json", keys["admin"])
    bad["body"] = "{not json"
    result = invoke("PartnersFunction", bad)
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"].startswith("malformed JSON body")
    overlap = json.loads(json.loads((EVENTS / "partners_create_peering.json").read_text())["body"])
    result = call("partners_create_peering.json", keys["admin"], 409, body={**overlap, "cidr": "10.0.0.0/20"})
    assert "overlaps this stack's VPC 10.0.0.0/16" in result["error"]
    wrong = event("partners_list.json", keys["admin"])
    wrong["httpMethod"] = "DELETE"
    result = invoke("PartnersFunction", wrong)
    assert (
        result["statusCode"] == 405 and json.loads(result["body"])["error"] == "method DELETE not allowed on /partners"
    )
