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
from collections import Counter

from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges import ExchangeError, UnknownInstrument
from trinity_beast.services.prices.errors import NoPrice
from trinity_beast.services.prices.rest import RestPrices

log = logging.getLogger(__name__)

FAILURE_MEMORY_S = 2.0


class RestFallback:
    def __init__(self, rest: RestPrices, timeout_s: float = 2.0) -> None:
        self._rest = rest
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

    async def _fetch(self, asset: str) -> Tick:
        registry = self._rest.registry
        problems: list[str] = []
        exchanges = [ex for ex in self._rest.settings.exchange_priority if registry.instrument(asset, ex) is not None]
        if not exchanges:
            raise NoPrice(f"unknown asset {asset}: no exchange in the registry lists it")
        for exchange in exchanges:
            self.calls[exchange] += 1
            try:
                return await self._rest.fetch(exchange, asset, self._timeout_s)
            except (ExchangeError, UnknownInstrument) as exc:
                problems.append(str(exc))
        reason = "no live price: " + "; ".join(problems)
        self._failures[asset] = (time.monotonic() + FAILURE_MEMORY_S, reason)
        raise NoPrice(reason)
