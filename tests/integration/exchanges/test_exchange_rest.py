"""REST ticker and instrument calls through the real connectors against the simulator."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from beast_sim import Simulator
from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.exchanges import ExchangeError, UnknownInstrument
from trinity_beast.exchanges.rest import fetch_instruments, fetch_ticker


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_fetch_ticker_each_exchange(sim: Simulator, registry: AssetRegistry, exchange: str) -> None:
    sim.set_price("BTC", "64000.25")
    async with httpx.AsyncClient() as client:
        tick = await fetch_ticker(client, exchange, sim.rest_urls[exchange], "BTC", registry, timeout=5)
    inst = registry.instrument("BTC", exchange)
    assert (tick.asset, tick.exchange, tick.source, tick.quote) == ("BTC", exchange, "rest", inst.quote)
    assert tick.price == Decimal("64000.25")
    assert tick.bid is not None and tick.ask is not None and tick.bid < tick.price < tick.ask
    assert sim.rest_calls[exchange] == 1 and sim.ticker_calls[(exchange, "BTC")] == 1


async def test_kraken_rest_uses_the_xdg_name(sim: Simulator, registry: AssetRegistry) -> None:
    sim.set_price("DOGE", "0.1234")
    async with httpx.AsyncClient() as client:
        tick = await fetch_ticker(client, "kraken", sim.rest_urls["kraken"], "DOGE", registry, timeout=5)
    assert tick.price == Decimal("0.1234") and tick.asset == "DOGE"


async def test_rest_calls_are_counted(sim: Simulator, registry: AssetRegistry) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            await fetch_ticker(client, "okx", sim.rest_urls["okx"], "ETH", registry, timeout=5)
        await fetch_ticker(client, "gateio", sim.rest_urls["gateio"], "SOL", registry, timeout=5)
    assert sim.rest_calls["okx"] == 3 and sim.rest_calls["gateio"] == 1 and sim.rest_calls["kraken"] == 0
    assert sim.ticker_calls[("okx", "ETH")] == 3
    sim.reset_counters()
    assert sum(sim.rest_calls.values()) == 0


async def test_unlisted_asset_raises_unknown_instrument(sim: Simulator, registry: AssetRegistry) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(UnknownInstrument, match="OKB is not listed on coinbase"):
            await fetch_ticker(client, "coinbase", sim.rest_urls["coinbase"], "OKB", registry, timeout=5)
        with pytest.raises(UnknownInstrument):
            await fetch_ticker(client, "coinbase", sim.rest_urls["coinbase"], "NOPE", registry, timeout=5)
        with pytest.raises(UnknownInstrument):
            await fetch_ticker(client, "binance", sim.rest_urls["coinbase"], "BTC", registry, timeout=5)
    assert sim.rest_calls["coinbase"] == 0  # nothing was asked


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_exchange_errors_raise(sim: Simulator, registry: AssetRegistry, exchange: str) -> None:
    sim.reject(exchange, registry.instrument("ETH", exchange).symbol)
    async with httpx.AsyncClient() as client:
        with pytest.raises(ExchangeError) as err:
            await fetch_ticker(client, exchange, sim.rest_urls[exchange], "ETH", registry, timeout=5)
        assert err.value.exchange == exchange
        sim.set_mode(exchange, "down")
        with pytest.raises(ExchangeError, match="HTTP 503"):
            await fetch_ticker(client, exchange, sim.rest_urls[exchange], "BTC", registry, timeout=5)
        sim.set_mode(exchange, "garbage")
        with pytest.raises(ExchangeError, match="not JSON"):
            await fetch_ticker(client, exchange, sim.rest_urls[exchange], "BTC", registry, timeout=5)


async def test_timeout_and_unreachable_raise_exchange_error(sim: Simulator, registry: AssetRegistry) -> None:
    sim.set_mode("okx", "silent")  # REST hangs
    async with httpx.AsyncClient() as client:
        with pytest.raises(ExchangeError, match="timed out"):
            await fetch_ticker(client, "okx", sim.rest_urls["okx"], "BTC", registry, timeout=0.3)
        with pytest.raises(ExchangeError, match="request failed"):
            await fetch_ticker(client, "okx", "http://127.0.0.1:1", "BTC", registry, timeout=2)


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_fetch_instruments_matches_the_registry(sim: Simulator, registry: AssetRegistry, exchange: str) -> None:
    async with httpx.AsyncClient() as client:
        listed = await fetch_instruments(client, exchange, sim.rest_urls[exchange], timeout=5)
    assert listed == {i.symbol for i in registry.instruments_for(exchange)}
