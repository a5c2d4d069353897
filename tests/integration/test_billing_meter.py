"""Exact monthly limits at the meter: reservations over the real caches, several processes.

Each `Meter` stands for one `beast serve` process; they share one cache (memory, or the real
Redis in a private namespace), as processes share one Redis in production.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import REDIS_URL, free_port, reachable

from trinity_beast.domain.usage import MONTH_PREFIX, month_of
from trinity_beast.services.meter import Meter
from trinity_beast.stores.cache import Cache, MemoryCache
from trinity_beast.stores.cache.redis import RedisCache

requests = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 4)),  # (process, key, units asked)
    min_size=1,
    max_size=60,
)
limits = st.lists(st.integers(1, 40), min_size=3, max_size=3)


async def serve_all(cache: Cache, asks: list[tuple[int, int, int]], key_limits: list[int]) -> Counter:
    """Every request at once (random interleavings come from the event loop and the cache);
    returns the units granted per key."""
    meters = [Meter(cache) for _ in range(3)]
    keys = [f"k{uuid.uuid4().hex[:8]}" for _ in key_limits]

    async def one(process: int, key: int, units: int) -> tuple[int, int]:
        await asyncio.sleep(0)  # let the others start: interleave
        grant = await meters[process].reserve(keys[key], key_limits[key], units)
        assert 0 <= grant.units <= units and not grant.offline
        return key, grant.units

    served: Counter = Counter()
    for key, units in await asyncio.gather(*(one(*a) for a in asks)):
        served[key] += units
    totals = await cache.hgetall(f"{MONTH_PREFIX}{month_of(time.time())}")
    for i, key_id in enumerate(keys):
        assert totals.get(key_id, 0) == served[i]  # what the cache holds is what was served
    return served


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asks=requests, key_limits=limits)
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_served_is_min_of_limit_and_asked(
    backend: str, asks: list[tuple[int, int, int]], key_limits: list[int]
) -> None:
    """The property of the billing rule: for random interleavings of processes, keys and
    units per request, every key is served exactly min(limit, units asked)."""
    if backend == "redis":
        assert reachable("127.0.0.1", 6379), "Redis at 127.0.0.1:6379 is needed"

    async def run() -> Counter:
        namespace = "t" + uuid.uuid4().hex[:12]
        cache: Cache = MemoryCache() if backend == "memory" else RedisCache(REDIS_URL, namespace=namespace)
        try:
            return await serve_all(cache, asks, key_limits)
        finally:
            await cache.close()
            if backend == "redis":
                client = sync_redis.Redis.from_url(REDIS_URL)
                for k in client.scan_iter(match=f"{namespace}:*"):
                    client.delete(k)
                client.close()

    served = asyncio.run(run())
    asked: Counter = Counter()
    for _, key, units in asks:
        asked[key] += units
    for key, limit in enumerate(key_limits):
        assert served[key] == min(limit, asked[key])


async def test_an_unreachable_cache_serves_up_to_the_local_allowance_then_refuses() -> None:
    """Redis refusing connections: a limited key is served from the process's allowance (never
    past what it last knew of its limit), then refused; the allowance 0 refuses at once."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cache = RedisCache(dead, namespace="t" + uuid.uuid4().hex[:8])
    try:
        meter = Meter(cache, offline_allowance=7)
        assert (await meter.reserve("k", 100, 1)).units == 0  # its month was never read: unknown, refused
        meter._month_known[(month_of(time.time()), "k")] = 0  # as read before the outage
        grants = [await meter.reserve("k", 100, 1) for _ in range(10)]
        assert [g.units for g in grants] == [1] * 7 + [0] * 3
        assert all(g.offline for g in grants) and meter.offline_units() == 7
        assert meter.quota("k", 100).used == 7  # visible to this process at once
        assert (await meter.reserve("k", 5, 3)).units == 0  # never past the limit it knows either
        strict = Meter(cache, offline_allowance=0)
        strict._month_known[(month_of(time.time()), "k")] = 0
        assert (await strict.reserve("k", 100, 1)).units == 0
    finally:
        await cache.close()


async def test_units_served_offline_are_settled_once_when_the_cache_returns(
    redis_url: str, redis_namespace: str
) -> None:
    """Served offline, then the cache returns: the first flush that works adds them to the month
    total once (a second flush adds nothing), and reservations resume against the shared total."""
    cache = RedisCache(redis_url, namespace=redis_namespace)
    try:
        meter = Meter(cache, offline_allowance=10)
        assert (await meter.reserve("k", 20, 2)).units == 2  # online
        meter._go_down(RuntimeError("simulated outage"))  # as after a failed cache call
        assert (await meter.reserve("k", 20, 3)).units == 3  # offline, from the allowance
        month = f"{MONTH_PREFIX}{month_of(time.time())}"
        assert (await cache.hgetall(month))["k"] == 2
        await meter.flush()
        assert (await cache.hgetall(month))["k"] == 5 and meter.offline_units() == 0
        await meter.flush()
        assert (await cache.hgetall(month))["k"] == 5
        other = Meter(cache)
        assert (await other.reserve("k", 20, 100)).units == 15
    finally:
        await cache.close()


async def test_quota_stays_visible_while_a_flush_is_in_flight() -> None:
    """Unlimited keys' units wait for the flush; while it awaits the cache, quota() still counts them."""

    class SlowCache(MemoryCache):
        gate = asyncio.Event()

        async def hincr(self, increments, maxima=()):  # type: ignore[no-untyped-def]
            await self.gate.wait()
            return await super().hincr(increments, maxima)

    cache = SlowCache()
    meter = Meter(cache)
    for _ in range(5):
        meter.record("p", "/price", "BTC", "http", 200, 0.001, billable=True)
    flushing = asyncio.create_task(meter.flush())
    while meter.pending():  # the flush has taken the rows and is waiting for the cache
        await asyncio.sleep(0)
    assert not flushing.done()
    assert meter.quota("p", 0).used == 5
    cache.gate.set()
    await flushing
    assert meter.quota("p", 0).used == 5


async def test_a_cache_that_lost_its_data_is_detected_and_totals_restored(redis_url: str, redis_namespace: str) -> None:
    """The usage data vanishes (FLUSHALL on a Redis without persistence, here the namespace's
    keys): the next reservation sees the marker gone, restores the month total it knew and
    keeps enforcing the limit; the loss is counted for /metrics and /ready."""
    cache = RedisCache(redis_url, namespace=redis_namespace)
    try:
        meter = Meter(cache)
        assert (await meter.reserve("k", 10, 8)).units == 8
        client = sync_redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{redis_namespace}:*"):
            client.delete(k)
        client.close()
        grant = await meter.reserve("k", 10, 5)
        assert grant.units == 2 and grant.quota.used == 10
        assert meter.losses == 1 and meter.lost_at is not None
        month = f"{MONTH_PREFIX}{month_of(time.time())}"
        assert (await cache.hgetall(month))["k"] == 10
    finally:
        await cache.close()


async def test_a_release_gives_back_exactly_what_was_not_delivered(redis_url: str, redis_namespace: str) -> None:
    """A WebSocket send that failed releases its unit: online from the cache's total, offline
    from the process's own count; the total after settling is what was delivered."""
    cache = RedisCache(redis_url, namespace=redis_namespace)
    try:
        meter = Meter(cache, offline_allowance=10)
        assert (await meter.reserve("k", 20, 4)).units == 4
        await meter.release("k", 1)
        month = f"{MONTH_PREFIX}{month_of(time.time())}"
        assert (await cache.hgetall(month))["k"] == 3
        assert meter.quota("k", 20).used == 3  # what this process knows goes down too (no 429 for given-back units)
        assert (await meter.reserve("k", 4, 1)).units == 1  # the released unit is there to take again
        await meter.release("k", 1)
        meter._go_down(RuntimeError("simulated outage"))
        assert (await meter.reserve("k", 20, 2)).units == 2
        await meter.release("k", 1)  # one of the offline units
        assert meter.offline_units() == 1
        await meter.flush()
        assert (await cache.hgetall(month))["k"] == 4 and meter.quota("k", 20).used == 4
    finally:
        await cache.close()
