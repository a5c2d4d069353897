"""Prewarm: fill the cache with a REST price for every registry asset.

Runs at start for every asset (alongside serving, so early requests are never held up) and
from the sync job for the assets whose cached price has gone stale. Assets are spread over
the exchanges that list them, each exchange paced at its connector's `rest_rate` (below the
published public REST limit its module cites), stablecoins first so USDT/USDC prices can be
converted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trinity_beast.domain.book import STABLECOINS, pick
from trinity_beast.exchanges import CONNECTORS, ExchangeError

if TYPE_CHECKING:
    from trinity_beast.services.prices.live import LivePrices
    from trinity_beast.services.prices.rest import RestPrices
    from trinity_beast.stores.cache import Cache

log = logging.getLogger(__name__)


class Pacer:
    """Spaces calls to one exchange at least 1/rate seconds apart."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval


@dataclass
class PrewarmResult:
    priced: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def plan(rest: RestPrices, assets: list[str]) -> dict[str, list[str]]:
    """Assign each asset to an exchange that lists it, balancing by each exchange's rate."""
    priority, registry = rest.settings.exchange_priority, rest.registry
    load: dict[str, float] = {ex: 0.0 for ex in priority}
    queues: dict[str, list[str]] = {ex: [] for ex in priority}
    for asset in assets:
        listed = [ex for ex in priority if registry.instrument(asset, ex) is not None]
        if asset in STABLECOINS:  # a stablecoin's own price must be in USD: it is the conversion rate
            listed = [
                ex for ex in listed if (inst := registry.instrument(asset, ex)) is not None and inst.quote == "USD"
            ]
        if not listed:
            continue
        best = min(listed, key=lambda ex: (load[ex] + 1) / CONNECTORS[ex].rest_rate)
        load[best] += 1
        queues[best].append(asset)
    return {ex: q for ex, q in queues.items() if q}


async def stale_assets(rest: RestPrices, live: LivePrices, cache: Cache) -> list[str]:
    """Registry assets the cache holds no fresh price for (what the sync job prewarms).

    Reads the cache itself (not this process's copy), so it works where no feed runs, as in
    the sync Lambda; the snapshot also gives the copy the stablecoin rates for conversion.
    """
    s = rest.settings
    snapshot = await cache.all_ticks()
    for by_exchange in snapshot.values():
        for tick in by_exchange.values():
            live.apply(tick)
    now = time.time()
    return [
        a for a in rest.registry.assets if not pick(snapshot.get(a, {}), s.exchange_priority, now, s.stale_after_s)[1]
    ]


async def prewarm(rest: RestPrices, assets: list[str] | None = None, timeout_s: float = 60.0) -> PrewarmResult:
    """Price `assets` (default: every registry asset) through REST, paced per exchange."""
    started = time.monotonic()
    wanted = list(assets if assets is not None else rest.registry.assets)
    result = PrewarmResult()
    pacers = {ex: Pacer(c.rest_rate) for ex, c in CONNECTORS.items()}

    async def one(exchange: str, asset: str) -> None:
        await pacers[exchange].wait()
        result.calls[exchange] = result.calls.get(exchange, 0) + 1
        try:
            await rest.fetch(exchange, asset, 3.0)
        except ExchangeError as exc:
            result.failed[asset] = str(exc)
            return
        result.priced.append(asset)

    async def run(queues: dict[str, list[str]]) -> None:
        async def drain(exchange: str, todo: list[str]) -> None:
            for asset in todo:
                await one(exchange, asset)

        await asyncio.gather(*(drain(ex, todo) for ex, todo in queues.items()))

    try:
        async with asyncio.timeout(timeout_s):
            await run(plan(rest, [a for a in wanted if a in STABLECOINS]))
            await run(plan(rest, [a for a in wanted if a not in STABLECOINS]))
    except TimeoutError:
        log.warning("prewarm stopped after %.0f s", timeout_s)
    result.seconds = round(time.monotonic() - started, 3)
    log.info("prewarm: %d priced, %d failed in %.1f s", len(result.priced), len(result.failed), result.seconds)
    return result


async def prewarm_stale(rest: RestPrices, live: LivePrices, cache: Cache, timeout_s: float = 60.0) -> PrewarmResult:
    """Prewarm only what the cache holds no fresh price for (the sync job's pass)."""
    return await prewarm(rest, await stale_assets(rest, live, cache), timeout_s)
