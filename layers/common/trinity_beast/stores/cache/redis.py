"""Redis (or MemoryDB) cache for production: shared by every LPO process.

Layout, all under one namespace prefix: `{ns}:price:{ASSET}` hash exchange -> tick JSON;
channel `{ns}:{channel}`; counter hashes `{ns}:{key}`; `{ns}:meta:claims` counts claims.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache.base import PRICES_CHANNEL, Cache, CacheUnavailable, Subscription

# Claims only ever move usage buckets: the counter shares their `{usage}` hash-tag slot so the
# claim script stays single-slot on cluster-mode Redis.
_CLAIMS = "{usage}:claims"

# Raise hash fields to at least the given values: ARGV = field1, value1, field2, value2, …
_HMAX_LUA = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""

# RENAME only when the source exists and the target does not, and count the claim.
_CLAIM_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('INCR', KEYS[3])
return 1
"""


# Set a hash field only if it is absent; return the value it holds afterwards.
_HSETNX_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  return tonumber(ARGV[2])
end
return tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
"""


# The usage marker: set once per cache lifetime; gone or changed = the cache lost its data.
_MARKER = "{usage}:marker"

# KEYS: month hash, own hash, marker. ARGV: key id, owner|key id, amount, limit, marker.
# Checks the marker, then takes up to `amount` without passing `limit` (0 = no check; a
# negative amount releases) and adds it to the owner's own total too.
_RESERVE_LUA = """
if redis.call('GET', KEYS[3]) ~= ARGV[5] then
  return {-1, 0}
end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local granted = amount
if amount > 0 and limit > 0 then
  granted = math.max(math.min(amount, limit - cur), 0)
end
if granted ~= 0 then
  cur = redis.call('HINCRBY', KEYS[1], ARGV[1], granted)
  redis.call('HINCRBY', KEYS[2], ARGV[2], granted)
end
return {granted, cur}
"""

# KEYS: month hash, own hash. ARGV: key id, owner|key id, total, add (1/0).
_SETTLE_LUA = """
local before = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local total = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], total)
if ARGV[4] == '1' and total ~= before then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], total - before)
end
return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
"""

_MARK_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


class _RedisSubscription(Subscription):
    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self._pubsub = pubsub

    async def __anext__(self) -> bytes:
        try:
            while True:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message["type"] == "message":
                    data: bytes = message["data"]
                    return data
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis leaves PubSub.aclose unannotated
        except RedisError:
            pass


class RedisCache(Cache):
    def __init__(self, url: str, namespace: str = "beast", password: str | None = None) -> None:
        self._ns = namespace
        # A bounded pool that waits for a free connection instead of failing under bursts. The
        # password (an ACL user's, on MemoryDB) comes apart from the URL so it never sits in one.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            password=password,
            max_connections=64,
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
        self._pool = pool
        self._redis = aioredis.Redis(connection_pool=pool)
        self._hmax = self._redis.register_script(_HMAX_LUA)
        self._claim = self._redis.register_script(_CLAIM_LUA)
        self._hsetnx = self._redis.register_script(_HSETNX_LUA)
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._settle = self._redis.register_script(_SETTLE_LUA)
        self._mark = self._redis.register_script(_MARK_LUA)

    def _k(self, key: str) -> str:
        return f"{self._ns}:{key}"

    async def put_ticks(self, ticks: Iterable[Tick]) -> None:
        channel = self._k(PRICES_CHANNEL)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for tick in ticks:
                    payload = tick.to_json()
                    pipe.hset(self._k(f"price:{tick.asset}"), tick.exchange, payload)
                    pipe.publish(channel, payload)
                await pipe.execute()
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def get_ticks(self, asset: str) -> dict[str, Tick]:
        try:
            raw = await self._redis.hgetall(self._k(f"price:{asset}"))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return {ex.decode(): Tick.from_json(v) for ex, v in raw.items()}  # type: ignore[union-attr]  # redis types replies bytes | str; this client never decodes them

    async def all_ticks(self) -> dict[str, dict[str, Tick]]:
        prefix = self._k("price:")
        out: dict[str, dict[str, Tick]] = {}
        try:
            async for key in self._redis.scan_iter(match=prefix + "*", count=500):
                raw = await self._redis.hgetall(key)
                if raw:
                    out[key.decode()[len(prefix) :]] = {ex.decode(): Tick.from_json(v) for ex, v in raw.items()}  # type: ignore[union-attr]  # redis types replies bytes | str; this client never decodes them
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return out

    async def publish(self, channel: str, message: bytes) -> None:
        try:
            await self._redis.publish(self._k(channel), message)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def subscribe(self, channel: str) -> Subscription:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._k(channel))
        except RedisError as exc:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis leaves PubSub.aclose unannotated
            raise CacheUnavailable(str(exc)) from exc
        return _RedisSubscription(pubsub)

    async def hincr(
        self, increments: Iterable[tuple[str, str, int]], maxima: Iterable[tuple[str, str, int]] = ()
    ) -> list[int]:
        items = list(increments)
        by_key: dict[str, list[str | int]] = {}
        for key, field, value in maxima:
            by_key.setdefault(key, []).extend((field, value))
        if not items and not by_key:
            return []
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, field, amount in items:
                    pipe.hincrby(self._k(key), field, amount)
                for key, args in by_key.items():
                    await self._hmax(keys=[self._k(key)], args=args, client=pipe)
                return [int(v) for v in (await pipe.execute())[: len(items)]]
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def hgetall(self, key: str) -> dict[str, int]:
        try:
            raw = await self._redis.hgetall(self._k(key))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return {f.decode(): int(v) for f, v in raw.items()}  # type: ignore[union-attr]  # redis types replies bytes | str; this client never decodes them

    async def keys(self, prefix: str) -> list[str]:
        full = self._k(prefix)
        strip = len(self._ns) + 1
        try:
            found = [k.decode()[strip:] async for k in self._redis.scan_iter(match=full + "*", count=500)]
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return sorted(found)

    async def claim(self, key: str, new_key: str) -> bool:
        try:
            return bool(await self._claim(keys=[self._k(key), self._k(new_key), self._k(_CLAIMS)]))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def hsetnx(self, key: str, field: str, value: int) -> int:
        try:
            return int(await self._hsetnx(keys=[self._k(key)], args=[field, value]))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def reserve(
        self, month: str, own: str, key_id: str, owner: str, amount: int, limit: int, marker: str
    ) -> tuple[int, int]:
        try:
            granted, total = await self._reserve(
                keys=[self._k(month), self._k(own), self._k(_MARKER)],
                args=[key_id, f"{owner}|{key_id}", amount, limit, marker],
            )
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return int(granted), int(total)

    async def settle(self, month: str, own: str, key_id: str, owner: str, total: int, add: bool) -> int:
        try:
            return int(
                await self._settle(
                    keys=[self._k(month), self._k(own)], args=[key_id, f"{owner}|{key_id}", total, 1 if add else 0]
                )
            )
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def mark(self, token: str) -> str:
        try:
            held = await self._mark(keys=[self._k(_MARKER)], args=[token])
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return held.decode() if isinstance(held, bytes) else str(held)

    async def claims(self) -> int:
        try:
            return int(await self._redis.get(self._k(_CLAIMS)) or 0)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self._k(key)))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()
