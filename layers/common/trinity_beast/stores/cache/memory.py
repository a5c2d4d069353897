"""In-process cache for the embedded default: one process, no servers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache.base import PRICES_CHANNEL, Cache, Subscription

_QUEUE_LIMIT = 10_000


class _MemorySubscription(Subscription):
    def __init__(self, queue: asyncio.Queue[bytes], unregister: Callable[[], None]) -> None:
        self._queue = queue
        self._unregister = unregister
        self._closed = False

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        self._closed = True
        self._unregister()


class MemoryCache(Cache):
    def __init__(self) -> None:
        self._ticks: dict[str, dict[str, Tick]] = defaultdict(dict)
        self._hashes: dict[str, dict[str, int]] = defaultdict(dict)
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._claims = 0

    async def put_ticks(self, ticks: Iterable[Tick]) -> None:
        for tick in ticks:
            self._ticks[tick.asset][tick.exchange] = tick
            await self.publish(PRICES_CHANNEL, tick.to_json())

    async def get_ticks(self, asset: str) -> dict[str, Tick]:
        return dict(self._ticks.get(asset, {}))

    async def all_ticks(self) -> dict[str, dict[str, Tick]]:
        return {asset: dict(by_ex) for asset, by_ex in self._ticks.items() if by_ex}

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            if queue.full():
                # A subscriber that stopped reading loses its oldest message, never blocks the publisher.
                queue.get_nowait()
            queue.put_nowait(message)

    async def subscribe(self, channel: str) -> Subscription:
        queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE_LIMIT)
        self._subscribers[channel].add(queue)
        return _MemorySubscription(queue, lambda: self._subscribers[channel].discard(queue))

    async def hincr(
        self, increments: Iterable[tuple[str, str, int]], maxima: Iterable[tuple[str, str, int]] = ()
    ) -> list[int]:
        out = []
        for key, field, amount in increments:
            h = self._hashes[key]
            h[field] = h.get(field, 0) + amount
            out.append(h[field])
        for key, field, value in maxima:
            h = self._hashes[key]
            h[field] = max(h.get(field, value), value)
        return out

    async def hgetall(self, key: str) -> dict[str, int]:
        return dict(self._hashes.get(key, {}))

    async def keys(self, prefix: str) -> list[str]:
        return sorted(k for k, v in self._hashes.items() if k.startswith(prefix) and v)

    async def claim(self, key: str, new_key: str) -> bool:
        if not self._hashes.get(key) or self._hashes.get(new_key):
            return False
        self._hashes[new_key] = self._hashes.pop(key)
        self._claims += 1
        return True

    async def hsetnx(self, key: str, field: str, value: int) -> int:
        return self._hashes[key].setdefault(field, value)

    async def claims(self) -> int:
        return self._claims

    async def delete(self, key: str) -> bool:
        return bool(self._hashes.pop(key, None))

    async def ping(self) -> bool:
        return True
