"""One-shot REST ticker and instrument calls, for cache misses and discovery."""

from __future__ import annotations

import time

import httpx

from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges import connector_for
from trinity_beast.exchanges.base import ExchangeError, RestRequest, UnknownInstrument, preview


async def _get(client: httpx.AsyncClient, exchange: str, rest_base: str, req: RestRequest, timeout: float) -> bytes:
    url = rest_base.rstrip("/") + req.path
    try:
        resp = await client.get(url, params=dict(req.params), timeout=timeout)
    except httpx.TimeoutException:
        raise ExchangeError(exchange, f"timed out after {timeout:g} s ({req.path})") from None
    except httpx.HTTPError as exc:
        raise ExchangeError(exchange, f"request failed ({type(exc).__name__}: {exc})") from None
    # Error bodies (4xx) still carry the exchange's own error text: let the parser read
    # them, but a 5xx or an empty body says nothing useful.
    if resp.status_code >= 500 or (resp.status_code >= 400 and not resp.content):
        raise ExchangeError(exchange, f"HTTP {resp.status_code}: {preview(resp.content)}")
    return resp.content


async def fetch_ticker(
    client: httpx.AsyncClient, exchange: str, rest_base: str, asset: str, registry: AssetRegistry, timeout: float
) -> Tick:
    """The current price of `asset` on `exchange` via its REST ticker (source="rest").

    Raises UnknownInstrument when the exchange does not list the asset, ExchangeError on
    any failure (network, timeout, HTTP error, exchange error, unusable answer).
    """
    connector = connector_for(exchange)
    inst = registry.instrument(asset, exchange)
    if inst is None:
        raise UnknownInstrument(exchange, f"{asset} is not listed on {exchange}")
    body = await _get(client, exchange, rest_base, connector.ticker_request(inst.rest_symbol), timeout)
    return connector.parse_ticker(body, inst.asset, inst.quote, time.time())


async def fetch_instruments(client: httpx.AsyncClient, exchange: str, rest_base: str, timeout: float) -> set[str]:
    """Tradable spot instruments on `exchange` (WebSocket spelling)."""
    connector = connector_for(exchange)
    body = await _get(client, exchange, rest_base, connector.instruments_request(), timeout)
    return connector.parse_instruments(body)
