"""PostgreSQL goes away: the sync retries with backoff and loses nothing; reports and prices degrade.

The database is reached through a fault proxy (tests/integration/faultproxy.py) in front of the shared
server, in a throwaway database, so refusing or cutting connections breaks only this test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from faultproxy import FaultProxy, fault_proxy

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import new_key
from trinity_beast.domain.settings import load_settings
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import CLAIM_PREFIX, MINUTE_PREFIX
from trinity_beast.services.meter import Meter
from trinity_beast.services.runtime import Runtime
from trinity_beast.services.sync import SyncStats, run_sync, sync_once
from trinity_beast.stores.cache.redis import RedisCache
from trinity_beast.stores.db.postgres import PostgresDatabase
from trinity_beast.transports.http.lpo import build_lpo
from trinity_beast.transports.http.lrs import build_lrs
from trinity_beast.transports.udp.lrs import UdpReportServer


def proxied(pg_url: str, proxy: FaultProxy) -> str:
    return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def db_total(pg_url: str) -> int:
    db = PostgresDatabase(pg_url)
    try:
        return int(db.query("SELECT COALESCE(SUM(requests), 0) FROM usage_buckets")[0][0])
    finally:
        db.close()


async def meter_minutes(cache: RedisCache, minutes_ago: range, per_minute: int) -> int:
    """Counts in closed minute buckets, as LPO processes flush them."""
    meter = Meter(cache)
    now = time.time()
    for m in minutes_ago:
        for _i in range(per_minute):
            meter.record("ak_" + "0" * 16, "/price", "BTC", "http", 200, 0.001, True, now=now - 60 * m)
    await meter.flush()
    return len(minutes_ago) * per_minute


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not await check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def cache(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisCache]:
    c = RedisCache(redis_url, namespace=redis_namespace)
    yield c
    await c.close()


async def test_sync_retries_with_backoff_while_postgres_is_down_and_loses_nothing(
    pg_url: str, cache: RedisCache
) -> None:
    with fault_proxy("127.0.0.1", 5432) as proxy:
        db = PostgresDatabase(proxied(pg_url, proxy))
        db.migrate()
        n = await meter_minutes(cache, range(2, 6), 25)

        # A pass whose connection is cut inside the write transaction (ledger row sent, counts not).
        original = db._execute

        def cut_mid_transaction(sql: str, params: Any = None) -> Any:
            if sql.startswith("INSERT INTO usage_buckets"):
                proxy.cut()
            return original(sql, params)

        db._execute = cut_mid_transaction  # type: ignore[method-assign]
        with pytest.raises(DatabaseUnavailable):
            await sync_once(cache, db, grace_s=0)
        db._execute = original  # type: ignore[method-assign]
        assert await cache.keys(CLAIM_PREFIX), "the claimed bucket stays in the cache until written"
        assert db_total(pg_url) == 0 and db.query("SELECT COUNT(*) FROM usage_batches") == [(0,)]

        # Down for a while: the loop retries with a growing delay, then catches up.
        proxy.refuse()
        stats = SyncStats()
        loop = asyncio.create_task(run_sync(cache, db, 60.0, grace_s=0, stats=stats))
        try:
            await wait_for(lambda: _ge(stats.failures, 3), 15, "three failed passes")
            started = time.time()
            await asyncio.sleep(1.0)
            assert stats.failures <= 4, "the retry delay grows (1 s, 2 s, 4 s...)"
            proxy.restore()
            await wait_for(lambda: _done(cache, stats), 15, "the backlog to clear")
            assert time.time() - started < 10
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        assert db_total(pg_url) == n
        assert stats.last_success is not None and stats.buckets >= 4
        # A rerun has nothing left to move and writes nothing twice.
        result = await sync_once(cache, db, grace_s=0)
        assert (result.buckets, result.requests) == (0, 0)
        assert db_total(pg_url) == n
        db.close()


async def _ge(value: int, floor: int) -> bool:
    return value >= floor


async def _done(cache: RedisCache, stats: SyncStats) -> bool:
    """A pass finished after the outage and left no claimed or closed bucket behind."""
    return (
        stats.last_success is not None
        and not await cache.keys(CLAIM_PREFIX)
        and not [k for k in await cache.keys(MINUTE_PREFIX) if int(k.rsplit(":", 1)[1]) < time.time() // 60 - 1]
    )


async def test_reports_and_prices_answer_from_what_they_can_reach(
    pg_url: str, cache: RedisCache, redis_url: str, redis_namespace: str, tmp_path: Any
) -> None:
    with fault_proxy("127.0.0.1", 5432) as pg_proxy, fault_proxy("127.0.0.1", 6379) as redis_proxy:
        settings = load_settings({"BEAST_DATA_DIR": str(tmp_path), "BEAST_KEY_CACHE_S": "0.5"})
        db = PostgresDatabase(proxied(pg_url, pg_proxy))
        rt_cache = RedisCache(redis_proxy.url("redis", "/0"), namespace=redis_namespace)
        rt = Runtime.create(settings, db=db, cache=rt_cache)
        admin, admin_secret = new_key("admin", "admin")
        sub, sub_secret = new_key("sub", "subscriber", 1000)
        never_seen, never_seen_secret = new_key("late", "subscriber", 1000)
        for key in (admin, sub, never_seen):
            db.insert_key(key)
        await rt.start()
        now = time.time()
        await rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now, now))
        lpo, lrs = build_lpo(rt), build_lrs(rt)
        auth = {"Authorization": f"Bearer {admin_secret}"}
        try:
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(lpo), base_url="http://lpo") as p,
                httpx.AsyncClient(transport=httpx.ASGITransport(lrs), base_url="http://lrs") as r,
            ):
                await wait_for(lambda: _has_price(rt), 5, "BTC in the process")
                for secret in (admin_secret, sub_secret):  # seen once while the database is up
                    assert (
                        await p.get("/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"})
                    ).status_code == 200
                assert (await r.get("/reports/usage", headers=auth)).status_code == 200
                await rt.meter.flush()  # these requests are now unsynced minutes in the cache

                pg_proxy.refuse()
                await asyncio.sleep(0.6)  # past BEAST_KEY_CACHE_S: lookups go to the (dead) database
                report = (await r.get("/reports/usage", params={"granularity": "day"}, headers=auth)).json()
                assert report["status_code"] == 200 and report["data"]["missing"] == ["database"]
                assert report["data"]["includes_unsynced"] is True
                by_key = {
                    row["api_key_id"]: row["requests"] for row in report["data"]["rows"] if row["endpoint"] == "/price"
                }
                assert by_key == {admin.id: 1, sub.id: 1}  # what the cache holds, nothing invented
                csv = await r.get("/reports/usage", params={"format": "csv"}, headers=auth)
                assert csv.status_code == 200 and csv.headers["x-missing"] == "database"

                # Keys seen before answer from the last lookup; a key never seen cannot be checked.
                ok = await p.get("/price?asset=BTC", headers={"Authorization": f"Bearer {sub_secret}"})
                assert ok.status_code == 200
                late = await p.get("/price?asset=BTC", headers={"Authorization": f"Bearer {never_seen_secret}"})
                assert late.status_code == 503 and late.json()["error"].startswith("cannot check the API key")
                assert late.headers["retry-after"] == "5"  # as every 503 (docs/api.md)
                status, *_ = await UdpReportServer(rt).answer(
                    json.dumps({"report": "usage", "api_key": never_seen_secret}).encode()
                )
                assert status == 503
                status, body, _ = await UdpReportServer(rt).answer(
                    json.dumps({"report": "usage", "api_key": sub_secret}).encode()
                )
                assert status == 200 and json.loads(body)["data"]["missing"] == ["database"]
                not_ready = await r.get("/ready")
                assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "5"  # as every 503
                partners = await r.get("/partners", headers=auth)  # a route that needs the database itself
                assert partners.status_code == 503 and partners.json()["error"].startswith(
                    "the database is unreachable"
                )
                assert partners.headers["retry-after"] == "5"

                redis_proxy.refuse()
                both = (await r.get("/reports/usage", headers=auth)).json()
                assert both["status_code"] == 503 and "neither the cache nor the database" in both["error"]

                pg_proxy.restore()
                redis_proxy.restore()
                await wait_for(lambda: _ready(r), 15, "the LRS to be ready again")
                back = (await r.get("/reports/usage", params={"granularity": "day"}, headers=auth)).json()
                assert back["data"]["missing"] == []
                late = await p.get("/price?asset=BTC", headers={"Authorization": f"Bearer {never_seen_secret}"})
                assert late.status_code == 200
        finally:
            await rt.stop()


async def _has_price(rt: Runtime) -> bool:
    return bool(rt.live.get("BTC"))


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/ready")).status_code == 200
