"""GET /price over a real HTTP connection, on the embedded stack and on Redis + PostgreSQL."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from support import InProcessServer

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import MONTH_PREFIX

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # the seed's: seconds and Z


def put(
    server: InProcessServer, asset: str, price: str, exchange: str = "coinbase", age_s: float = 0.0, **kw: Any
) -> Tick:
    now = time.time() - age_s
    tick = Tick(asset, kw.pop("quote", "USD"), Decimal(price), None, None, exchange, now - 0.25, now, **kw)
    server.call(server.rt.cache.put_tick(tick))
    return tick


def get_price(server: InProcessServer, query: str, key: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or server.admin_key}"}
    with server.client() as c:
        return c.get(f"/price?{query}", headers=headers, **kw)


def wait_served(server: InProcessServer, asset: str, price: float) -> dict:
    """Prices travel through pub/sub to the server's copy; poll briefly until this one is served."""
    deadline = time.time() + 5
    while True:
        body = get_price(server, f"asset={asset}").json()
        entries = [a for a in body["data"]["assets"] if a["price"] == price] if body["data"] else []
        if entries or time.time() > deadline:
            return body
        time.sleep(0.02)


def assert_envelope(body: dict, status: int, endpoint: str = "/price") -> None:
    assert list(body) == list(FIELDS)
    assert body["status_code"] == status
    mark = "✅" if status < 400 else "❌"
    assert body["status"] == f"{mark} [LPO] [us-east-2] [BeastMain] [{endpoint}] [{status}]"
    assert body["endpoint"] == endpoint
    assert ISO_Z.match(body["timestamp"])
    assert body["region"] == "us-east-2" and body["cluster_node"] == "BeastMain"


def test_a_price_written_to_the_cache_is_served(server: InProcessServer) -> None:
    tick = put(server, "BTC", "64000.12")
    body = wait_served(server, "BTC", 64000.12)
    assert_envelope(body, 200)
    assert body["api_key_id"] == server.admin_id
    assert body["error"] == ""
    data = body["data"]
    assert list(data) == [
        "assets",
        "failed",
        "duration_ms",
        "monthly_usage",
        "monthly_limit",
        "usage_pct",
        "usage_warning",
        "duration_us",
    ]
    [entry] = data["assets"]
    assert entry["asset"] == "BTC" and entry["price"] == 64000.12
    assert entry["exchange"] == "coinbase-ws" and entry["cached"] is True
    assert 0 <= entry["cache_age_seconds"] < 5
    # The exchange's own timestamp, not the time it was cached: whole Unix seconds, then milliseconds.
    assert entry["timestamp"] == int(tick.exchange_ts) and entry["timestamp_ms"] == int(tick.exchange_ts * 1000)
    assert entry["readable_timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tick.exchange_ts))
    assert isinstance(entry["latency_ms"], int) and entry["latency_ms"] >= 0 and entry["latency_us"] >= 0
    assert data["failed"] == [] and data["monthly_limit"] == 0 and data["usage_warning"] == ""
    assert isinstance(data["duration_ms"], int) and data["duration_us"] >= 0


def test_several_assets_by_comma_and_repeated_parameter(server: InProcessServer) -> None:
    for asset, price in (("BTC", "64000"), ("ETH", "3000"), ("SOL", "150")):
        put(server, asset, price)
    wait_served(server, "SOL", 150.0)
    for query in ("asset=BTC,eth,SOL", "asset=BTC&asset=ETH&asset=sol", "asset=BTC,ETH&asset=SOL,BTC"):
        body = get_price(server, query).json()
        assert [a["asset"] for a in body["data"]["assets"]] == ["BTC", "ETH", "SOL"], query


def test_api_key_in_the_query_works_too(server: InProcessServer) -> None:
    put(server, "BTC", "1")
    with server.client() as c:
        r = c.get(f"/price?asset=BTC&api_key={server.admin_key}")
    assert r.status_code in (200, 404)
    assert r.json()["api_key_id"] == server.admin_id


def test_priority_order_and_staleness(server: InProcessServer) -> None:
    put(server, "ETH", "3001", exchange="kraken")
    put(server, "ETH", "3000", exchange="coinbase")
    body = wait_served(server, "ETH", 3000.0)
    assert body["data"]["assets"][0]["exchange"] == "coinbase-ws"
    # coinbase's last tick is stale: the next exchange in priority order that is fresh wins.
    put(server, "ADA", "0.51", exchange="coinbase", age_s=120)
    put(server, "ADA", "0.52", exchange="kraken")
    entry = wait_served(server, "ADA", 0.52)["data"]["assets"][0]
    assert entry["exchange"] == "kraken-ws"
    # Only stale prices: the freshest is served, and its age says so.
    put(server, "DOT", "7.1", exchange="coinbase", age_s=300)
    put(server, "DOT", "7.2", exchange="kraken", age_s=200)
    entry = wait_served(server, "DOT", 7.2)["data"]["assets"][0]
    assert entry["exchange"] == "kraken-ws" and entry["cache_age_seconds"] >= 200
    assert entry["stale"] is True  # the live REST fallback was tried and could not do better


def test_an_asset_without_a_price_goes_to_failed(server: InProcessServer) -> None:
    put(server, "BTC", "64000")
    wait_served(server, "BTC", 64000.0)
    body = get_price(server, "asset=BTC,NOPE").json()
    assert_envelope(body, 200)
    assert [a["asset"] for a in body["data"]["assets"]] == ["BTC"]
    assert body["data"]["failed"] == [
        {"asset": "NOPE", "reason": "unknown asset NOPE: no exchange in the registry lists it"}
    ]

    r = get_price(server, "asset=NOPE")
    assert r.status_code == 404
    assert_envelope(r.json(), 404)
    assert r.json()["error"] == "no price available for NOPE"


def test_usage_fields_and_rate_limit_headers(server: InProcessServer) -> None:
    put(server, "BTC", "64000")
    wait_served(server, "BTC", 64000.0)
    _, secret = server.create_key("subscriber", monthly_limit=10)
    first = get_price(server, "asset=BTC", key=secret)
    second = get_price(server, "asset=BTC", key=secret)
    assert first.json()["data"]["monthly_usage"] == 1
    assert second.json()["data"]["monthly_usage"] == 2
    assert second.json()["data"]["monthly_limit"] == 10
    assert second.json()["data"]["usage_pct"] == 20.0
    assert second.headers["x-ratelimit-limit"] == "10"
    assert second.headers["x-ratelimit-remaining"] == "8"
    assert int(second.headers["x-ratelimit-reset"]) > time.time()


def state(server: InProcessServer) -> tuple:
    """Everything a request could change: keys, prices, billable usage."""
    server.call(server.rt.meter.flush())
    month = time.strftime("%Y-%m", time.gmtime())
    return (
        [k.public() for k in server.rt.db.list_keys()],
        {a: {e: t.to_dict() for e, t in by.items()} for a, by in server.call(server.rt.cache.all_ticks()).items()},
        server.call(server.rt.cache.hgetall(f"{MONTH_PREFIX}{month}")),
    )


@pytest.mark.parametrize(
    "method,path,headers,status,error",
    [
        ("GET", "/price?asset=BTC", {}, 401, "missing API key: send Authorization: Bearer KEY or ?api_key=KEY"),
        ("GET", "/price?asset=BTC", {"Authorization": "Bearer tbk_not_a_real_key_at_all"}, 401, "invalid API key"),
        ("GET", "/price?asset=BTC&api_key=short", {}, 401, "invalid API key"),
        (
            "GET",
            "/price?asset=BTC",
            {"Authorization": "Basic abc"},
            401,
            "malformed Authorization header: expected Authorization: Bearer KEY",
        ),
        (
            "GET",
            "/price?asset=%C3%9F",
            "admin",
            400,
            "malformed asset 'ß': an asset is 1-15 letters or digits, e.g. BTC",
        ),
        (
            "GET",
            "/price?asset=BTC&max_age_ms=%D9%A3",
            "admin",
            400,
            "max_age_ms must be a whole number of milliseconds (digits 0-9), got '٣'",
        ),
        (
            "GET",
            "/price?asset=BTC&max_age_ms=1_000",
            "admin",
            400,
            "max_age_ms must be a whole number of milliseconds (digits 0-9), got '1_000'",
        ),
        (
            "GET",
            "/price?asset=B$C",
            "admin",
            400,
            "malformed asset 'B$C': an asset is 1-15 letters or digits, e.g. BTC",
        ),
        (
            "GET",
            "/price?asset=ABCDEFGHIJKLMNOP",
            "admin",
            400,
            "malformed asset 'ABCDEFGHIJKLMNOP': an asset is 1-15 letters or digits, e.g. BTC",
        ),
        ("GET", "/price", "admin", 400, "missing asset: ask for ?asset=BTC or ?asset=BTC,ETH,SOL"),
        ("GET", "/price?asset=,,", "admin", 400, "missing asset: ask for ?asset=BTC or ?asset=BTC,ETH,SOL"),
        (
            "GET",
            "/price?asset=" + ",".join(f"A{i}" for i in range(51)),
            "admin",
            400,
            "too many assets: 51 asked, at most 50 per request",
        ),
        ("POST", "/price?asset=BTC", "admin", 405, "method POST not allowed on /price"),
        ("DELETE", "/health", {}, 405, "method DELETE not allowed on /health"),
        ("GET", "/nowhere", {}, 404, "unknown path /nowhere"),
        ("GET", "/price/BTC", "admin", 404, "unknown path /price/BTC"),
    ],
)
def test_bad_requests_answer_a_clear_error_and_change_nothing(
    server: InProcessServer, method: str, path: str, headers: Any, status: int, error: str
) -> None:
    put(server, "BTC", "64000")
    wait_served(server, "BTC", 64000.0)
    if headers == "admin":
        headers = {"Authorization": f"Bearer {server.admin_key}"}
    before = state(server)
    with server.client() as c:
        r = c.request(method, path, headers=headers)
    assert r.status_code == status
    body = r.json()
    endpoint = path.split("?")[0]
    assert_envelope(body, status, endpoint)
    assert body["error"] == error
    assert body["status"].startswith("❌")
    assert state(server) == before


def test_a_revoked_key_is_refused(server: InProcessServer) -> None:
    key_id, secret = server.create_key("subscriber")
    put(server, "BTC", "64000")
    wait_served(server, "BTC", 64000.0)
    assert get_price(server, "asset=BTC", key=secret).status_code == 200
    server.rt.db.revoke_key(key_id, time.time())
    server.rt.keys.forget()  # what the key cache's short lifetime does on its own
    r = get_price(server, "asset=BTC", key=secret)
    assert r.status_code == 401 and r.json()["error"] == "invalid API key"  # as for a key that never existed


def test_a_subscriber_past_the_monthly_limit_gets_429(server: InProcessServer) -> None:
    put(server, "BTC", "64000")
    wait_served(server, "BTC", 64000.0)
    _, secret = server.create_key("subscriber", monthly_limit=2)
    assert [get_price(server, "asset=BTC", key=secret).status_code for _ in range(2)] == [200, 200]
    r = get_price(server, "asset=BTC", key=secret)
    assert r.status_code == 429
    body = r.json()
    assert_envelope(body, 429)
    assert body["error"].startswith("monthly limit of 2 requests reached; the limit resets at ")
    assert body["data"]["monthly_usage"] == 2
    assert r.headers["x-ratelimit-remaining"] == "0"


def test_health_needs_no_key(server: InProcessServer) -> None:
    with server.client() as c:
        r = c.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert_envelope(body, 200, "/health")
    assert body["data"]["status"] == "ok"
    assert body["data"]["cache_connected"] is True
