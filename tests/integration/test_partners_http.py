"""The partner routes on the LRS over real HTTP, on both storage stacks, EC2 in moto."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import InProcessServer, in_process_server, stack_env

from partner_aws import REGION, AwsWorld, aws  # noqa: F401 (fixture)
from trinity_beast.domain.envelope import FIELDS

PARTNER_ACCOUNT = "111122223333"


@pytest.fixture(params=["embedded", "production"])
def lrs(request: pytest.FixtureRequest, tmp_path: Path, aws: AwsWorld) -> Iterator[InProcessServer]:
    env = {**stack_env(request, request.param, tmp_path), **aws.env, "BEAST_KEY_CACHE_S": "0.2"}
    with in_process_server(env, lrs=True) as srv:
        yield srv


def client(srv: InProcessServer, secret: str | None) -> httpx.Client:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return httpx.Client(base_url=srv.lrs_url, headers=headers, timeout=20)


def body_of(response: httpx.Response) -> dict:
    body = response.json()
    assert tuple(body) == FIELDS
    assert body["status"].startswith("✅" if response.status_code < 400 else "❌")
    assert body["status_code"] == response.status_code
    return body


def test_partner_routes_need_the_right_key(lrs: InProcessServer, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc()
    details = {
        "name": "Acme",
        "aws_account_id": PARTNER_ACCOUNT,
        "region": REGION,
        "connection_type": "privatelink",
        "vpc_id": vpc["vpc_id"],
        "subnet_ids": [vpc["subnet_id"]],
    }
    with client(lrs, None) as anonymous:
        refused = anonymous.get("/partners")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert body_of(refused)["error"].startswith("missing API key")
    _, subscriber = lrs.create_key("subscriber")
    with client(lrs, subscriber) as sub:
        for method, path in (
            ("GET", "/partners"),
            ("POST", "/partners"),
            ("GET", "/partners/pending"),
            ("GET", "/security-groups/udp"),
            ("POST", "/partners/pt_x/approve"),
        ):
            answer = sub.request(method, path, json={})
            assert answer.status_code == 403, (method, path)
            assert body_of(answer)["error"].endswith("needs an admin key; this is a subscriber key")

    with client(lrs, lrs.admin_key) as admin:
        created = admin.post("/partners", json=details)
        assert created.status_code == 201, created.text
        data = body_of(created)["data"]
        partner, key = data["partner"], data["api_key"]
        assert partner["status"] == "invited" and key["key"].startswith("tbk_") and key["tier"] == "partner"
        assert data["onboarding"]["commands"][0]["command"].startswith("aws ec2 create-vpc-endpoint --region us-east-2")
        other = body_of(admin.post("/partners", json={**details, "name": "Other"}))["data"]["partner"]

        listed = body_of(admin.get("/partners"))["data"]
        assert [p["name"] for p in listed["partners"]] == ["Acme", "Other"]
        assert listed["by_status"]["invited"] == 2 and listed["stack"]["vpc_cidr"] == "10.0.0.0/16"
        assert listed["partners"][0]["usage"] == {"api_key_id": key["id"], "key_active": True, "monthly_usage": 0}
        assert "key" not in repr(listed["partners"][0]["usage"]).replace("api_key_id", "").replace("key_active", "")

        # Every bad input is a clear UME, never a crash.
        for method, path, kwargs, status, message in [
            ("GET", "/partners/pt_0000000000000000", {}, 404, "unknown partner 'pt_0000000000000000'"),
            ("POST", "/partners/pt_0000000000000000/approve", {"json": {}}, 404, "unknown partner"),
            (
                "POST",
                "/partners",
                {"content": b"{nope", "headers": {"content-type": "application/json"}},
                400,
                "malformed JSON body",
            ),
            (
                "POST",
                "/partners",
                {"content": b"[1]", "headers": {"content-type": "application/json"}},
                400,
                "expected a JSON object",
            ),
            ("POST", "/partners", {"json": {**details, "cidr": "10.0.0.0/16"}}, 400, "cidr: only peering partners"),
            ("DELETE", "/partners", {}, 405, "method DELETE not allowed on /partners"),
            ("GET", "/partners/a/b/c", {}, 404, "unknown path /partners/a/b/c"),
            (
                "POST",
                "/security-groups/udp",
                {"json": {"cidr": "198.51.100.1/24"}},
                400,
                "did you mean 198.51.100.0/24?",
            ),
            ("POST", "/security-groups/udp", {"json": {"cidr": "10.0.9.0/24"}}, 409, "overlaps this stack's VPC"),
            ("DELETE", "/security-groups/udp", {}, 400, "cidr: required"),
        ]:
            answer = admin.request(method, path, **kwargs)
            assert answer.status_code == status, (path, answer.text)
            assert message in body_of(answer)["error"], answer.text
        assert admin.delete("/partners").headers["allow"] == "GET, POST"

    # A partner key reads its own record (no audit trail), and nothing else.
    with client(lrs, key["key"]) as mine:
        own = mine.get(f"/partners/{partner['id']}")
        assert own.status_code == 200
        assert set(body_of(own)["data"]) == {"partner", "usage"} and body_of(own)["api_key_id"] == key["id"]
        assert mine.get(f"/partners/{other['id']}").status_code == 403
        assert mine.get("/partners/pt_0000000000000000").status_code == 403
        assert mine.get("/partners").status_code == 403
        assert mine.get(f"/partners/{partner['id']}/onboarding").status_code == 403


def test_privatelink_and_udp_access_over_http(lrs: InProcessServer, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc()
    details = {
        "name": "Acme",
        "aws_account_id": PARTNER_ACCOUNT,
        "region": REGION,
        "connection_type": "privatelink",
        "vpc_id": vpc["vpc_id"],
        "subnet_ids": [vpc["subnet_id"]],
    }
    with client(lrs, lrs.admin_key) as admin:
        preview = body_of(admin.post("/partners/preview", json=details))["data"]
        assert [c["side"] for c in preview["commands"]] == ["partner", "operator"] and not preview["complete"]
        assert body_of(admin.get("/partners"))["data"]["count"] == 0  # a preview saves nothing
        created = body_of(admin.post("/partners", json=details))["data"]
        pid, secret = created["partner"]["id"], created["api_key"]["key"]
        endpoint = account.request_endpoint(vpc)
        [request] = body_of(admin.get("/partners/pending"))["data"]["requests"]
        assert request["connection_id"] == endpoint and request["partner"]["id"] == pid

        approved = admin.post(f"/partners/{pid}/approve", json={"connection_id": endpoint})
        assert approved.status_code == 200, approved.text
        assert body_of(approved)["data"]["partner"]["status"] == "active" and body_of(approved)["data"]["changed"]
        again = body_of(admin.post(f"/partners/{pid}/approve", json={"connection_id": endpoint}))["data"]
        assert again["partner"]["status"] == "active" and again["changed"] is False
        assert aws.endpoints.state(endpoint) == "available"
        onboarding = body_of(admin.get(f"/partners/{pid}/onboarding"))["data"]
        assert onboarding["complete"] and endpoint in onboarding["commands"][1]["command"]

        with httpx.Client(base_url=lrs.url, headers={"Authorization": f"Bearer {secret}"}) as lpo:
            me = lpo.get("/usage/me")
            assert (
                me.status_code == 200
                and me.json()["data"]["tier"] == "partner"
                and me.json()["data"]["monthly_limit"] == 0
            )

        revoked = body_of(admin.post(f"/partners/{pid}/revoke", json={"reason": "test"}))["data"]
        assert revoked["partner"]["status"] == "revoked" and aws.endpoints.state(endpoint) == "rejected"
        time.sleep(0.3)  # past BEAST_KEY_CACHE_S
        with httpx.Client(base_url=lrs.url, headers={"Authorization": f"Bearer {secret}"}) as lpo:
            assert lpo.get("/usage/me").status_code == 401
        detail = body_of(admin.get(f"/partners/{pid}"))["data"]
        assert [e["action"] for e in detail["audit"]] == ["create", "register", "approve", "approve", "revoke"]
        assert {e["actor"] for e in detail["audit"]} == {lrs.admin_id}
        assert detail["usage"]["key_active"] is False

        added = body_of(admin.post("/security-groups/udp", json={"cidr": "198.51.100.0/24", "description": "office"}))[
            "data"
        ]
        assert added["changed"] and [r["cidr"] for r in added["rules"]] == ["198.51.100.0/24"]
        listed = body_of(admin.get("/security-groups/udp"))["data"]
        assert listed["ports"] == [2679, 2680] and listed["rules"][0]["ports"] == [2679, 2680]
        removed = body_of(admin.delete("/security-groups/udp", params={"cidr": "198.51.100.0/24"}))["data"]
        assert removed["changed"] and removed["rules"] == []
        trail = body_of(admin.get("/partners/audit"))["data"]["entries"]
        assert [e["action"] for e in trail][-2:] == ["udp_allow", "udp_deny"]


def test_reconcile_teardown_and_handoff_over_http(lrs: InProcessServer, aws: AwsWorld) -> None:
    account = aws.partner_account()
    vpc = account.vpc("172.31.0.0/16")
    details = {
        "name": "Zürich Quant",
        "aws_account_id": PARTNER_ACCOUNT,
        "region": REGION,
        "connection_type": "peering",
        "vpc_id": vpc["vpc_id"],
        "cidr": vpc["cidr"],
        "route_table_id": vpc["route_table_id"],
    }
    with client(lrs, lrs.admin_key) as admin:
        created = body_of(admin.post("/partners", json=details))["data"]
        pid = created["partner"]["id"]
        with client(lrs, created["api_key"]["key"]) as partner:
            for method, path in (
                ("POST", "/partners/reconcile"),
                ("GET", f"/partners/{pid}/handoff"),
                ("GET", f"/partners/{pid}/teardown"),
                ("POST", f"/partners/{pid}/reconcile"),
            ):
                assert partner.request(method, path, json={}).status_code == 403, path
        pcx = account.request_peering(vpc)
        aws.ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)  # by hand
        done = body_of(admin.post("/partners/reconcile", json={}))["data"]
        assert done["adopted"] == 1 and done["partners"][0]["partner"]["status"] == "active"
        assert [d["kind"] for d in done["partners"][0]["drift"]] == ["route", "udp"]  # accepted, nothing else yet
        one = body_of(admin.post(f"/partners/{pid}/reconcile", json={}))["data"]
        assert one["adopted"] == [] and len(one["drift"]) == 2
        assert body_of(admin.post(f"/partners/{pid}/approve", json={}))["data"]["changed"] is True
        sheet = body_of(admin.get(f"/partners/{pid}/handoff"))["data"]
        assert sheet["filename"] == f"trinity-beast-handoff-{pid}.md" and "Zürich Quant" in sheet["markdown"]
        plan = body_of(admin.get(f"/partners/{pid}/teardown"))["data"]
        assert [p["kind"] for p in plan["remove"]] == ["route", "udp", "connection"]
        too_long = admin.post(f"/partners/{pid}/revoke", json={"reason": "x" * 501})
        assert too_long.status_code == 400 and body_of(too_long)["error"].startswith("reason:")
        assert body_of(admin.get(f"/partners/{pid}"))["data"]["partner"]["status"] == "active"  # changed nothing
        revoked = body_of(admin.post(f"/partners/{pid}/revoke", json={"reason": "done"}))["data"]
        assert revoked["partner"]["status"] == "revoked" and [r["kind"] for r in revoked["remain"]] == ["partner_route"]
        gone = admin.get(f"/partners/{pid}/handoff")
        assert gone.status_code == 409 and "nothing to hand over" in body_of(gone)["error"]
        bad = admin.post("/partners", json={**details, "aws_account_id": "1", "vpc_id": "v"})
        assert bad.status_code == 400
        assert [e["field"] for e in body_of(bad)["data"]["errors"]] == ["aws_account_id", "vpc_id"]
