"""The in-process copy of the price book that every LPO process serves from.

Seeded from the cache at start and kept current by the cache's pub/sub, so answering a
price costs no network round trip. When the cache goes away the copy keeps what it has
(served as stale once past its age) and resynchronises when the cache returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache import PRICES_CHANNEL, Cache, CacheUnavailable

log = logging.getLogger(__name__)


class LivePrices:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._ticks: dict[str, dict[str, Tick]] = {}
        self._listeners: list[Callable[[Tick], None]] = []
        self.connected = asyncio.Event()

    def get(self, asset: str) -> dict[str, Tick]:
        return self._ticks.get(asset, {})

    def assets(self) -> list[str]:
        return sorted(self._ticks)

    def on_update(self, listener: Callable[[Tick], None]) -> None:
        """Call `listener` with every newer tick (the WebSocket feed fans these out)."""
        self._listeners.append(listener)

    def apply(self, tick: Tick) -> bool:
        """Keep `tick` if it is newer than what we hold for its (asset, exchange)."""
        by_exchange = self._ticks.setdefault(tick.asset, {})
        held = by_exchange.get(tick.exchange)
        if held is not None and held.received_ts > tick.received_ts:
            return False
        by_exchange[tick.exchange] = tick
        for listener in self._listeners:
            try:
                listener(tick)
            except Exception:
                log.exception("price listener failed")
        return True

    async def refresh(self, asset: str) -> dict[str, Tick]:
        """Read one asset from the cache (a local miss); keeps whatever is newer."""
        for tick in (await self._cache.get_ticks(asset)).values():
            self.apply(tick)
        return self.get(asset)

    async def run(self) -> None:
        """Follow the cache forever: subscribe, then snapshot, then apply each update."""
        delay = 0.5
        while True:
            subscription = None
            try:
                subscription = await self._cache.subscribe(PRICES_CHANNEL)
                for by_exchange in (await self._cache.all_ticks()).values():
                    for tick in by_exchange.values():
                        self.apply(tick)
                self.connected.set()
                delay = 0.5
                async for raw in subscription:
                    try:
                        self.apply(Tick.from_json(raw))
                    except (ValueError, KeyError, TypeError, ArithmeticError):
                        log.warning("ignored a malformed price message")
            except CacheUnavailable as exc:
                self.connected.clear()
                log.warning("price subscription lost (%s); retrying in %.1fs", exc, delay)
            finally:
                if subscription is not None:
                    await subscription.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
