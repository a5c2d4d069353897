"""One exchange's REST ticker to a served price: fetch, convert to USD, apply, cache.

The one pipeline behind the REST fallback (a miss or a stale price at request time) and
prewarm (start-up and the sync job), so both convert and store a REST price the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from trinity_beast.domain.book import convert, usd_rate
from trinity_beast.exchanges import ExchangeError, rest_url
from trinity_beast.exchanges.rest import fetch_ticker

if TYPE_CHECKING:
    import httpx

    from trinity_beast.domain.assets import AssetRegistry
    from trinity_beast.domain.settings import Settings
    from trinity_beast.domain.tick import Tick
    from trinity_beast.services.prices.live import LivePrices
    from trinity_beast.stores.cache import Cache

log = logging.getLogger(__name__)


class NoUsdRate(ExchangeError):
    """The exchange quotes the asset in a stablecoin whose USD price nobody holds yet."""


class RestPrices:
    def __init__(
        self,
        settings: Settings,
        registry: AssetRegistry,
        live: LivePrices,
        cache: Cache,
        client: Callable[[], httpx.AsyncClient],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._live = live
        self._cache = cache
        self._client = client  # the process's pooled client, made on first use

    def usd_rate(self, quote: str) -> Decimal | None:
        s = self.settings
        return usd_rate(quote, self._live.get(quote), s.exchange_priority, time.time(), s.stale_after_s)

    async def fetch(self, exchange: str, asset: str, timeout_s: float) -> Tick:
        """The USD price of `asset` from `exchange`'s REST ticker, now in this process and the cache.

        Raises ExchangeError (NoUsdRate among them) or UnknownInstrument with a reason to show.
        """
        raw = await fetch_ticker(
            self._client(), exchange, rest_url(self.settings, exchange), asset, self.registry, timeout_s
        )
        tick = convert(raw, self.usd_rate)
        if tick is None:
            raise NoUsdRate(exchange, f"no live {raw.quote}/USD rate to convert its price")
        self._live.apply(tick)
        try:
            await self._cache.put_tick(tick)
        except Exception:  # the price is still good to serve from this process
            log.warning("could not cache the REST price of %s", asset)
        return tick
