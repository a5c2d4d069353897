"""The Lambda functions that reach Redis and PostgreSQL (reports, sync, every deployed event file),
invoked the way `sam local invoke -e events/...` would."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from samlocal import EVENTS, emf_lines, functions, invoke, response_headers


@pytest.fixture
def usage_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Redis + PostgreSQL as the reports and sync functions see them (through their environment)."""
    import asyncio

    from trinity_beast.domain.keys import new_key
    from trinity_beast.services.meter import Meter
    from trinity_beast.stores.cache.redis import RedisCache
    from trinity_beast.stores.db.postgres import PostgresDatabase

    env = {
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
        key, secret = new_key(tier, tier, 100 if tier == "subscriber" else None)
        db.insert_key(key)
        keys[tier] = (key.id, secret)

    async def meter() -> None:
        cache = RedisCache(env["REDIS_URL"], namespace=env["BEAST_REDIS_NAMESPACE"])
        m = Meter(cache)
        for proto, n, minutes_ago in (("http", 4, 3), ("udp", 2, 3), ("ws", 3, 0)):
            for _ in range(n):
                m.record(
                    keys["subscriber"][0], "/price", "BTC", proto, 200, 0.001, True, now=time.time() - 60 * minutes_ago
                )
        await m.flush()
        await cache.close()

    asyncio.run(meter())
    yield keys, db
    db.close()


def api_event(name: str, secret: str, **query: str) -> dict:
    event = json.loads((EVENTS / name).read_text())
    event["headers"]["Authorization"] = event["multiValueHeaders"]["Authorization"][0] = f"Bearer {secret}"
    if query:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def test_reports_function_answers_like_the_lrs(usage_stack) -> None:
    import csv
    import io

    keys, _ = usage_stack
    admin_id, admin = keys["admin"]
    sub_id, sub = keys["subscriber"]
    result = invoke("ReportsFunction", api_event("reports_usage_json.json", admin))
    assert result["statusCode"] == 200, result["body"]
    body = json.loads(result["body"])
    assert (
        body["status"] == "✅ [LRS] [us-east-2] [BeastMain] [/reports/usage] [200]" and body["api_key_id"] == admin_id
    )
    assert sum(r["requests"] for r in body["data"]["rows"]) == 4  # the event asks for protocol=http

    event = api_event("reports_usage_csv.json", sub)
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    event["queryStringParameters"] = {"format": "csv", "endpoint": "/price"}
    event["multiValueQueryStringParameters"] = {"format": ["csv"], "endpoint": ["/price"]}
    result = invoke("ReportsFunction", event)
    assert result["statusCode"] == 200
    assert response_headers(result)["content-type"] == ["text/csv; charset=utf-8"]
    assert response_headers(result)["content-disposition"][0].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(result["body"], newline="")))
    assert {(r["protocol"], r["requests"]) for r in rows} == {("http", "4"), ("udp", "2"), ("ws", "3")}
    assert {r["api_key_id"] for r in rows} == {sub_id}

    refused = invoke("ReportsFunction", api_event("reports_usage_json.json", sub, api_key_id=admin_id))
    assert refused["statusCode"] == 403
    bad = invoke("ReportsFunction", api_event("reports_usage_json.json", admin, format="xml"))
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"].startswith("format: expected one of")
    assert invoke("ReportsFunction", api_event("reports_usage_json.json", "tbk_wrong_key"))["statusCode"] == 401

    me = invoke("ReportsFunction", api_event("reports_usage_me.json", sub))
    assert me["statusCode"] == 200
    data = json.loads(me["body"])["data"]
    assert (data["api_key_id"], data["monthly_usage"], data["monthly_limit"], data["remaining"]) == (sub_id, 9, 100, 91)
    assert response_headers(me)["x-ratelimit-remaining"] == ["91"]


def test_sync_function_moves_closed_minutes_once(usage_stack) -> None:
    keys, db = usage_stack
    event = json.loads((EVENTS / "sync_schedule.json").read_text())
    first = invoke("SyncFunction", event)
    assert first["buckets"] == 1 and first["requests"] == 6  # the minute 3 minutes ago; the current one stays open
    again = invoke("SyncFunction", event)
    assert again["buckets"] == 0 and again["requests"] == 0
    [[n]] = db.query("SELECT SUM(requests) FROM usage_buckets WHERE api_key_id = :k", k=keys["subscriber"][0])
    assert int(n) == 6
    # Nothing is lost to the move: the report still shows all nine requests.
    result = invoke("ReportsFunction", api_event("reports_usage_json.json", keys["admin"][1], endpoint="/price"))
    assert sum(r["requests"] for r in json.loads(result["body"])["data"]["rows"]) == 9


# --- as deployed: the database from Secrets Manager (moto), every event file, metrics ----------

FUNCTION_OF_EVENT = {Path(props["CodeUri"]).name: name for name, props in functions().items()}
# partners_* events belong to the partners function and are exercised by the partners tests;
# authorizer_* events (API Gateway authorizer requests, no proxy answer) by tests/integration/test_authorizer.py.
DEPLOYED_EVENTS = sorted(p.name for p in EVENTS.glob("*.json") if not p.name.startswith(("partners_", "authorizer_")))


@pytest.fixture
def deployed_stack(usage_stack, monkeypatch: pytest.MonkeyPatch):
    """usage_stack as the template wires it: no DATABASE_URL, only the Aurora secret's ARN (moto)."""
    import boto3
    from moto import mock_aws
    from support import UNREACHABLE_EXCHANGES

    from trinity_beast.stores.db.postgres import connect_args

    db_url = os.environ["DATABASE_URL"]
    for name, value in {
        **UNREACHABLE_EXCHANGES,
        "BEAST_PREWARM": "false",
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL")
    args = connect_args(db_url)
    with mock_aws():
        secret = {
            "username": args["user"],
            "password": "unused-with-trust-auth",
            "host": args["host"],
            "port": args["port"],
            "dbname": args["database"],
            "engine": "postgres",
            "sslmode": "disable",
        }
        arn = boto3.client("secretsmanager").create_secret(
            Name="trinity-beast/test/database", SecretString=json.dumps(secret)
        )["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        yield usage_stack


@pytest.mark.parametrize("event_file", DEPLOYED_EVENTS)
def test_every_event_file_is_answered_as_deployed(
    event_file: str, deployed_stack, capsys: pytest.CaptureFixture
) -> None:
    keys, _ = deployed_stack
    function = FUNCTION_OF_EVENT[event_file.split("_", 1)[0]]
    event = json.loads((EVENTS / event_file).read_text())
    if "headers" in event and "Authorization" in (event["headers"] or {}):
        event = api_event(event_file, keys["admin"][1])
    result = invoke(function, event)
    if "statusCode" in event or "httpMethod" in event:
        assert result["statusCode"] == 200, result["body"]
        if response_headers(result)["content-type"][0].startswith("application/json"):
            body = json.loads(result["body"])
            assert body["status"].startswith("✅") and body["error"] == ""
    else:
        assert result["ok"] is True and result["errors"] == [], result
    metrics = emf_lines(capsys.readouterr().out)
    assert metrics and all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TrinityBeast" for m in metrics)
    names = {d["Name"] for m in metrics for d in m["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names & {"Responses2xx", "UsageBucketsSynced"}


def test_reports_function_reads_the_key_by_the_one_rule(usage_stack) -> None:
    """Issue 13, probe 8, on Lambda: Bearer wins, a malformed Authorization is a 401 (no fall-back
    to ?api_key), unknown and revoked keys answer alike."""
    keys, db = usage_stack
    _, sub = keys["subscriber"]

    def call(authorization: str | None, api_key: str | None) -> dict:
        event = api_event("reports_usage_json.json", sub, **({"api_key": api_key} if api_key else {}))
        if authorization is None:
            del event["headers"]["Authorization"]
            del event["multiValueHeaders"]["Authorization"]
        else:
            event["headers"]["Authorization"] = event["multiValueHeaders"]["Authorization"][0] = authorization
        result = invoke("ReportsFunction", event)
        return json.loads(result["body"]) | {"http": result["statusCode"]}

    from trinity_beast.domain.keys import new_key

    gone, gone_secret = new_key("gone", "subscriber")
    db.insert_key(gone)
    db.revoke_key(gone.id, time.time())
    assert call(f"Bearer {sub}", "tbk_never_issued_0000000000")["http"] == 200  # the header wins
    assert call(None, sub)["http"] == 200  # the query counts without a header
    malformed = call(f"Basic {sub}", sub)
    assert malformed["http"] == 401 and malformed["error"].startswith("malformed Authorization header")
    unknown = call("Bearer tbk_never_issued_0000000000", None)
    revoked = call(f"Bearer {gone_secret}", None)
    assert unknown["http"] == revoked["http"] == 401 and unknown["error"] == revoked["error"] == "invalid API key"
