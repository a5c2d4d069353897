"""One contract, two backends: memory and the real Redis pass the same tests."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache import PRICES_CHANNEL, Cache


def tick(asset: str = "BTC", exchange: str = "coinbase", price: str = "64000.12", ts: float = 1_700_000_000.0) -> Tick:
    return Tick(asset, "USD", Decimal(price), Decimal("63999"), Decimal("64001"), exchange, ts, ts + 0.01)


async def test_a_stored_tick_comes_back_exactly(cache_backend: Cache) -> None:
    t = tick()
    await cache_backend.put_tick(t)
    assert await cache_backend.get_ticks("BTC") == {"coinbase": t}
    assert await cache_backend.get_ticks("ETH") == {}


async def test_latest_tick_per_exchange_replaces_the_previous(cache_backend: Cache) -> None:
    await cache_backend.put_tick(tick(price="1"))
    await cache_backend.put_tick(tick(price="2"))
    await cache_backend.put_tick(tick(exchange="kraken", price="3"))
    held = await cache_backend.get_ticks("BTC")
    assert {ex: str(t.price) for ex, t in held.items()} == {"coinbase": "2", "kraken": "3"}


async def test_all_ticks_lists_every_asset(cache_backend: Cache) -> None:
    await cache_backend.put_tick(tick("BTC"))
    await cache_backend.put_tick(tick("ETH", price="3000.5"))
    everything = await cache_backend.all_ticks()
    assert set(everything) == {"BTC", "ETH"}
    assert everything["ETH"]["coinbase"].price == Decimal("3000.5")


async def test_subscribers_get_every_put_in_order(cache_backend: Cache) -> None:
    sub = await cache_backend.subscribe(PRICES_CHANNEL)
    try:
        for i in range(5):
            await cache_backend.put_tick(tick(price=str(100 + i)))
        got = [Tick.from_json(await asyncio.wait_for(sub.__anext__(), 5)).price for _ in range(5)]
        assert got == [Decimal(100 + i) for i in range(5)]
    finally:
        await sub.aclose()


async def test_publish_reaches_every_subscriber_of_the_channel_only(cache_backend: Cache) -> None:
    a = await cache_backend.subscribe("alpha")
    b = await cache_backend.subscribe("alpha")
    other = await cache_backend.subscribe("beta")
    try:
        await cache_backend.publish("alpha", b"hello")
        assert await asyncio.wait_for(a.__anext__(), 5) == b"hello"
        assert await asyncio.wait_for(b.__anext__(), 5) == b"hello"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.__anext__(), 0.3)
    finally:
        for s in (a, b, other):
            await s.aclose()


async def test_counters_add_up_and_return_totals(cache_backend: Cache) -> None:
    assert await cache_backend.hincr([("usage:x", "k1", 2), ("usage:x", "k2", 5), ("usage:x", "k1", 3)]) == [2, 5, 5]
    assert await cache_backend.hgetall("usage:x") == {"k1": 5, "k2": 5}
    assert await cache_backend.hgetall("usage:none") == {}
    assert await cache_backend.hincr([]) == []


async def test_concurrent_increments_are_exact(cache_backend: Cache) -> None:
    await asyncio.gather(*(cache_backend.hincr([("usage:c", "k", 1)]) for _ in range(200)))
    assert await cache_backend.hgetall("usage:c") == {"k": 200}


async def test_keys_by_prefix(cache_backend: Cache) -> None:
    await cache_backend.hincr([("usage:min:2", "a", 1), ("usage:min:1", "a", 1), ("usage:month:x", "a", 1)])
    assert await cache_backend.keys("usage:min:") == ["usage:min:1", "usage:min:2"]


async def test_ping(cache_backend: Cache) -> None:
    assert await cache_backend.ping() is True


async def test_redis_namespaces_do_not_see_each_other(redis_url: str, redis_namespace: str) -> None:
    from trinity_beast.stores.cache.redis import RedisCache

    a = RedisCache(redis_url, namespace=redis_namespace)
    b = RedisCache(redis_url, namespace=redis_namespace + "x")
    try:
        await a.put_tick(tick())
        assert await b.get_ticks("BTC") == {}
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_raises_cache_unavailable() -> None:
    from trinity_beast.stores.cache import CacheUnavailable
    from trinity_beast.stores.cache.redis import RedisCache

    cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(CacheUnavailable):
            await cache.get_ticks("BTC")
        assert await cache.ping() is False
    finally:
        await cache.close()


async def test_a_batch_of_ticks_is_stored_and_published_in_order(cache_backend: Cache) -> None:
    sub = await cache_backend.subscribe(PRICES_CHANNEL)
    try:
        batch = [tick("BTC", price="1"), tick("ETH", price="2"), tick("BTC", "kraken", price="3")]
        await cache_backend.put_ticks(batch)
        assert [Tick.from_json(await asyncio.wait_for(sub.__anext__(), 5)) for _ in batch] == batch
        assert set(await cache_backend.get_ticks("BTC")) == {"coinbase", "kraken"}
        await cache_backend.put_ticks([])
    finally:
        await sub.aclose()


async def test_maxima_raise_fields_in_the_same_step_as_increments(cache_backend: Cache) -> None:
    got = await cache_backend.hincr([("usage:m", "n", 1)], maxima=[("usage:m", "max", 7), ("usage:m2", "max", 3)])
    assert got == [1]
    await cache_backend.hincr([("usage:m", "n", 1)], maxima=[("usage:m", "max", 5), ("usage:m2", "max", 9)])
    assert await cache_backend.hgetall("usage:m") == {"n": 2, "max": 7}
    assert await cache_backend.hgetall("usage:m2") == {"max": 9}
    assert await cache_backend.hincr([], maxima=[("usage:m", "max", 8)]) == []
    assert (await cache_backend.hgetall("usage:m"))["max"] == 8


async def test_concurrent_maxima_keep_the_largest(cache_backend: Cache) -> None:
    await asyncio.gather(*(cache_backend.hincr([], maxima=[("usage:x", "max", v)]) for v in range(100)))
    assert await cache_backend.hgetall("usage:x") == {"max": 99}


async def test_claim_renames_once_and_counts(cache_backend: Cache) -> None:
    before = await cache_backend.claims()
    await cache_backend.hincr([("usage:min:1", "a", 4)])
    assert await cache_backend.claim("usage:min:1", "usage:claim:1:x") is True
    assert await cache_backend.claims() == before + 1
    assert await cache_backend.hgetall("usage:min:1") == {}
    assert await cache_backend.hgetall("usage:claim:1:x") == {"a": 4}
    # Absent source, or a taken target: no claim, nothing moves, nothing counted.
    assert await cache_backend.claim("usage:min:1", "usage:claim:1:y") is False
    await cache_backend.hincr([("usage:min:1", "a", 1)])
    assert await cache_backend.claim("usage:min:1", "usage:claim:1:x") is False
    assert await cache_backend.hgetall("usage:claim:1:x") == {"a": 4}
    assert await cache_backend.hgetall("usage:min:1") == {"a": 1}
    assert await cache_backend.claims() == before + 1


async def test_only_one_of_many_concurrent_claimers_wins(cache_backend: Cache) -> None:
    await cache_backend.hincr([("usage:min:5", "a", 1)])
    won = await asyncio.gather(*(cache_backend.claim("usage:min:5", f"usage:claim:5:{i}") for i in range(20)))
    assert won.count(True) == 1
    assert len(await cache_backend.keys("usage:claim:5:")) == 1


async def test_delete_removes_a_hash(cache_backend: Cache) -> None:
    await cache_backend.hincr([("usage:d", "a", 1)])
    assert await cache_backend.delete("usage:d") is True
    assert await cache_backend.delete("usage:d") is False
    assert await cache_backend.hgetall("usage:d") == {}
    assert await cache_backend.keys("usage:d") == []


async def test_hsetnx_sets_only_an_absent_field(cache_backend: Cache) -> None:
    assert await cache_backend.hsetnx("usage:s", "k", 7) == 7
    assert await cache_backend.hsetnx("usage:s", "k", 9) == 7
    await cache_backend.hincr([("usage:s", "k", 1)])
    assert await cache_backend.hsetnx("usage:s", "k", 100) == 8
    results = await asyncio.gather(*(cache_backend.hsetnx("usage:r", "k", v) for v in range(1, 20)))
    assert len(set(results)) == 1  # one writer won; everyone sees its value


M, OWN = "{usage}:month:2026-12", "{usage}:own:2026-12"


async def test_reserve_never_passes_the_limit_under_concurrency(cache_backend: Cache) -> None:
    """The atomic check-and-increment behind exact monthly limits: 300 concurrent reservations
    of 1-3 units against a limit of 50 grant exactly 50, each one whole or in part."""
    marker = await cache_backend.mark("m1")
    asks = [1 + i % 3 for i in range(300)]
    grants = await asyncio.gather(
        *(cache_backend.reserve(M, OWN, "k", f"p{i % 2}", n, 50, marker) for i, n in enumerate(asks))
    )
    assert sum(g for g, _ in grants) == 50
    assert all(0 <= g <= n for (g, _), n in zip(grants, asks, strict=True))
    assert (await cache_backend.hgetall(M))["k"] == 50
    own = await cache_backend.hgetall(OWN)
    assert own["p0|k"] + own["p1|k"] == 50
    assert await cache_backend.reserve(M, OWN, "k", "p0", 1, 50, marker) == (0, 50)
    assert await cache_backend.reserve(M, OWN, "k", "p0", -2, 0, marker) == (-2, 48)  # a release
    assert await cache_backend.reserve(M, OWN, "k", "p0", 5, 0, marker) == (5, 53)  # 0 = no limit


async def test_reserve_refuses_when_the_marker_changed(cache_backend: Cache) -> None:
    assert await cache_backend.mark("first") == "first"
    assert await cache_backend.mark("second") == "first"  # set once
    assert await cache_backend.reserve(M, OWN, "k", "p", 1, 10, "other") == (-1, 0)
    assert await cache_backend.hgetall(M) == {}


async def test_settle_counts_offline_units_once(cache_backend: Cache) -> None:
    """A process served 5 units offline; 2 of its reservations did reach the cache after all
    (timed out on its side). Settling its own total of 5 adds 3, and settling again adds nothing."""
    marker = await cache_backend.mark("m")
    await cache_backend.reserve(M, OWN, "k", "other", 10, 0, marker)
    await cache_backend.reserve(M, OWN, "k", "p", 2, 0, marker)
    assert await cache_backend.settle(M, OWN, "k", "p", 5, True) == 15
    assert await cache_backend.settle(M, OWN, "k", "p", 5, True) == 15
    assert (await cache_backend.hgetall(OWN))["p|k"] == 5
    assert await cache_backend.settle(M, OWN, "k", "p", 7, False) == 15  # reset without adding
