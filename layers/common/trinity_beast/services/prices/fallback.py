"""Cache miss or stale price -> one live REST ticker call per exchange, shared by all askers.

Concurrent requests for the same asset share one in-flight fetch (single flight), which
tries the exchanges in priority order with a short timeout each and stops at the first
price. The price is converted to USD, written to the cache (so every process sees it) and
served with `cached: false`. A failure is remembered for a moment so a storm of requests
for an asset nobody can price does not become a storm of exchange calls.

Upstream protection: each (exchange, asset) is called at most once per `min_interval_s`
(BEAST_REST_MIN_INTERVAL_S), and an asset priced by REST less than that ago is not fetched
again, whatever the number of callers, keys or `max_age_ms` values: the caller gets
`Throttled` and answers with what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from trinity_beast.domain.book import pick
from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges import ExchangeError, UnknownInstrument
from trinity_beast.services.prices.errors import NoPrice, Throttled
from trinity_beast.services.prices.rest import RestPrices

log = logging.getLogger(__name__)

FAILURE_MEMORY_S = 2.0


class RestFallback:
    def __init__(self, rest: RestPrices, timeout_s: float = 2.0, min_interval_s: float = 1.0) -> None:
        self._rest = rest
        self._timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self._inflight: dict[str, asyncio.Task[Tick]] = {}
        self._failures: dict[str, tuple[float, str]] = {}
        self._called: dict[tuple[str, str], float] = {}  # (exchange, asset) -> monotonic time of the last call
        self._priced: dict[str, float] = {}  # asset -> monotonic time of the last REST price
        self._recent: dict[str, Tick] = {}  # asset -> its last REST price (kept out of the book when fed)
        self.calls: Counter[str] = Counter()  # REST calls made, per exchange

    async def fetch(self, asset: str) -> Tick:
        now = time.monotonic()
        failed = self._failures.get(asset)
        if failed is not None and failed[0] > now:
            raise NoPrice(failed[1])
        if asset not in self._inflight and now - self._priced.get(asset, -1e18) < self.min_interval_s:
            raise Throttled(self._throttled(asset))
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
        if len(self._called) > 100_000:  # bounded: drop entries past their interval
            cutoff = time.monotonic() - self.min_interval_s
            self._called = {k: t for k, t in self._called.items() if t > cutoff}
            self._priced = {k: t for k, t in self._priced.items() if t > cutoff}
            self._recent = {k: t for k, t in self._recent.items() if k in self._priced}
        tried = 0
        for exchange in exchanges:
            if time.monotonic() - self._called.get((exchange, asset), -1e18) < self.min_interval_s:
                continue
            tried += 1
            self._called[(exchange, asset)] = time.monotonic()
            self.calls[exchange] += 1
            try:
                tick = await self._rest.fetch(exchange, asset, self._timeout_s, share=not self._fed(asset))
            except (ExchangeError, UnknownInstrument) as exc:
                problems.append(str(exc))
            else:
                self._priced[asset] = time.monotonic()
                self._recent[asset] = tick
                return tick
        if not tried:
            raise Throttled(self._throttled(asset))
        reason = "no live price: " + "; ".join(problems)
        self._failures[asset] = (time.monotonic() + FAILURE_MEMORY_S, reason)
        raise NoPrice(reason)

    def recent(self, asset: str) -> Tick | None:
        """The last REST price of `asset` (what a caller within the interval is answered)."""
        return self._recent.get(asset)

    def _fed(self, asset: str) -> bool:
        """A fresh feed price is held: a REST price (asked by one key's max_age_ms) is answered to
        its asker but not put in the book, so what others are served and pushed is unchanged."""
        settings = self._rest.settings
        tick, fresh = pick(
            self._rest.live_ticks(asset), settings.exchange_priority, time.time(), settings.stale_after_s
        )
        return tick is not None and fresh and tick.source == "ws"

    def _throttled(self, asset: str) -> str:
        return f"{asset} was refreshed from the exchanges less than {self.min_interval_s:g} s ago (at most one REST call per exchange and asset per {self.min_interval_s:g} s)"
