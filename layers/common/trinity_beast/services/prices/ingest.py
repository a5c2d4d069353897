"""From exchange feeds to the cache: feed manager -> price book -> coalescing writer.

The feeds call back synchronously for every tick; the writer keeps only the latest tick
per (asset, exchange) until its next batch, so a slow or absent cache bounds memory at one
tick per instrument instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from trinity_beast.domain.book import PriceBook
from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache import Cache, CacheUnavailable

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

log = logging.getLogger(__name__)


class TickWriter:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._pending: dict[tuple[str, str], Tick] = {}
        self._wake = asyncio.Event()
        self.written = 0

    def submit(self, tick: Tick) -> None:
        self._pending[(tick.asset, tick.exchange)] = tick
        self._wake.set()

    async def run(self) -> None:
        delay = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._cache.put_ticks(batch.values())
                self.written += len(batch)
                delay = 0.2
            except CacheUnavailable as exc:
                for key, tick in batch.items():  # keep what we could not write, unless something newer came
                    held = self._pending.get(key)
                    if held is None or held.received_ts < tick.received_ts:
                        self._pending[key] = tick
                log.warning("price write deferred, cache unavailable: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._wake.set()


async def start_feeds(rt: Runtime) -> None:
    """Connect to every exchange and keep the cache current (a background part of `beast serve`)."""
    from trinity_beast.exchanges.feeds import FeedManager

    writer = TickWriter(rt.cache)
    book = PriceBook(writer.submit, rt.settings.exchange_priority, rt.settings.stale_after_s, time.time)
    feeds = FeedManager(rt.settings, rt.registry, book.ingest)
    rt.feeds = feeds
    rt.spawn(writer.run(), "tick-writer")
    await feeds.start()
    rt.on_stop(feeds.stop)
