"""Cache miss or stale price -> one live REST ticker call per exchange, shared by all askers.

Concurrent requests for the same asset share one in-flight fetch (single flight), which
tries the exchanges in priority order with a short timeout each and stops at the first
price. The price is converted to USD, written to the cache (so every process sees it) and
served with `cached: false`. A failure is remembered for a moment so a storm of requests
for an asset nobody can price does not become a storm of exchange calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from collections import Counter
from typing import TYPE_CHECKING, Callable

from trinity_beast.domain.book import convert, usd_rate
from trinity_beast.exchanges import ExchangeError, UnknownInstrument, rest_url
from trinity_beast.exchanges.rest import fetch_ticker
from trinity_beast.domain.tick import Tick
from trinity_beast.services.prices.errors import NoPrice

if TYPE_CHECKING:
    import httpx

    from trinity_beast.domain.assets import AssetRegistry
    from trinity_beast.domain.settings import Settings
    from trinity_beast.services.prices.live import LivePrices
    from trinity_beast.stores.cache import Cache

log = logging.getLogger(__name__)

FAILURE_MEMORY_S = 2.0


class RestFallback:
    def __init__(
        self,
        settings: Settings,
        registry: AssetRegistry,
        live: LivePrices,
        cache: Cache,
        client: Callable[[], httpx.AsyncClient],
        timeout_s: float = 2.0,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._live = live
        self._cache = cache
        self._client = client  # the process's pooled client, made on first use
        self._timeout_s = timeout_s
        self._inflight: dict[str, asyncio.Task[Tick]] = {}
        self._failures: dict[str, tuple[float, str]] = {}
        self.calls: Counter[str] = Counter()  # REST calls made, per exchange

    async def fetch(self, asset: str) -> Tick:
        failed = self._failures.get(asset)
        if failed is not None and failed[0] > time.monotonic():
            raise NoPrice(failed[1])
        task = self._inflight.get(asset)
        if task is None:
            task = asyncio.create_task(self._fetch(asset), name=f"rest-{asset}")
            self._inflight[asset] = task
            task.add_done_callback(lambda _t: self._inflight.pop(asset, None))
        return await asyncio.shield(task)

    def _rate(self, quote: str) -> Decimal | None:
        s = self._settings
        return usd_rate(quote, self._live.get(quote), s.exchange_priority, time.time(), s.stale_after_s)

    async def _fetch(self, asset: str) -> Tick:
        settings, registry = self._settings, self._registry
        problems: list[str] = []
        exchanges = [ex for ex in settings.exchange_priority if registry.instrument(asset, ex) is not None]
        if not exchanges:
            raise NoPrice(f"unknown asset {asset}: no exchange in the registry lists it")
        for exchange in exchanges:
            self.calls[exchange] += 1
            try:
                raw = await fetch_ticker(
                    self._client(), exchange, rest_url(settings, exchange), asset, registry, self._timeout_s
                )
            except (ExchangeError, UnknownInstrument) as exc:
                problems.append(str(exc))
                continue
            tick = convert(raw, self._rate)
            if tick is None:
                problems.append(f"{exchange}: no live {raw.quote}/USD rate to convert its price")
                continue
            self._live.apply(tick)
            try:
                await self._cache.put_tick(tick)
            except Exception:  # the price is still good to serve from this process
                log.warning("could not cache the REST price of %s", asset)
            return tick
        reason = "no live price: " + "; ".join(problems)
        self._failures[asset] = (time.monotonic() + FAILURE_MEMORY_S, reason)
        raise NoPrice(reason)
