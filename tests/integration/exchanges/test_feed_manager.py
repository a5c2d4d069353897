"""The real connectors through the FeedManager against the simulator on loopback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from support import wait_for

from beast_sim import Simulator
from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import EXCHANGES, Settings
from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges import HEARTBEAT, Event
from trinity_beast.exchanges.feeds import FeedManager

FEW = ["BTC", "ETH", "SOL", "USDT", "USDC", "DOGE", "LINK", "PEPE"]


class Recorder:
    """Collects ticks and events the way the price book would receive them."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.events: list[tuple[str, Event]] = []

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)

    def on_event(self, exchange: str, event: Event) -> None:
        self.events.append((exchange, event))

    def count(self, exchange: str, asset: str | None = None) -> int:
        return sum(1 for t in self.ticks if t.exchange == exchange and (asset is None or t.asset == asset))

    def heartbeats(self, exchange: str) -> int:
        return sum(1 for ex, e in self.events if ex == exchange and e.kind == HEARTBEAT)


def manager(settings: Settings, registry: AssetRegistry, rec: Recorder, **kw: Any) -> FeedManager:
    opts: dict[str, Any] = dict(
        assets=FEW,
        watchdog_s=2.0,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
        connect_delay_s=0.05,
        on_event=rec.on_event,
    )
    opts.update(kw)
    return FeedManager(settings, registry, rec.on_tick, **opts)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


async def test_all_six_exchanges_yield_ticks(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    """Full registry, default connect delays (Crypto.com waits 1 s), every keep-alive path."""
    sim.set_price("BTC", "64000.25")
    fm = FeedManager(
        sim_settings,
        registry,
        rec.on_tick,
        on_event=rec.on_event,
        watchdog_s=5.0,
        keepalive_s={"okx": 0.2, "gateio": 0.2},
    )
    async with fm:
        for ex in EXCHANGES:
            await wait_for(
                lambda ex=ex: any(t.exchange == ex and t.asset == "BTC" for t in rec.ticks), 8, f"{ex} BTC tick"
            )
        # Heartbeats flow both ways: Crypto.com's must be answered or the simulator hangs up.
        await wait_for(
            lambda: all(rec.heartbeats(ex) >= 3 for ex in EXCHANGES), 8, "heartbeats/pongs from every exchange"
        )
        health = fm.health()
    for ex in EXCHANGES:
        h = health[ex]
        assert h["state"] == "connected" and h["reconnects"] == 0 and h["errors"] == 0, (ex, h)
        assert h["symbols"] == len(registry.instruments_for(ex)) and h["unknown_symbols"] == []
        assert h["last_message_age_s"] is not None and h["last_message_age_s"] < 5
        btc = [t for t in rec.ticks if t.exchange == ex and t.asset == "BTC"]
        inst = registry.instrument("BTC", ex)
        assert all(t.price == Decimal("64000.25") and t.quote == inst.quote and t.source == "ws" for t in btc)
        assert all(t.bid < t.price < t.ask for t in btc if t.bid is not None and t.ask is not None)
        assert len({t.asset for t in rec.ticks if t.exchange == ex}) > 5
    assert sim.heartbeat_disconnects["cryptocom"] == 0
    assert sum(sim.connections.values()) == 6
    assert all(h["state"] == "stopped" for h in fm.health().values())


async def test_reconnects_after_a_drop(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    fm = manager(sim_settings, registry, rec, exchanges=["kraken", "gemini", "cryptocom"])
    async with fm:
        await wait_for(lambda: all(rec.count(ex) > 0 for ex in ("kraken", "gemini", "cryptocom")), 5, "first ticks")
        for ex in ("kraken", "gemini", "cryptocom"):
            sim.drop(ex)
        await wait_for(
            lambda: all(sim.connections[ex] == 2 for ex in ("kraken", "gemini", "cryptocom")), 5, "reconnections"
        )
        before = {ex: rec.count(ex) for ex in ("kraken", "gemini", "cryptocom")}
        await wait_for(lambda: all(rec.count(ex) > before[ex] + 5 for ex in before), 5, "ticks after reconnect")
        health = fm.health()
    for ex in ("kraken", "gemini", "cryptocom"):
        assert health[ex]["reconnects"] == 1 and health[ex]["state"] == "connected"
    # Gemini's book is rebuilt from the new connection's snapshot: still a sane top of book.
    last = [t for t in rec.ticks if t.exchange == "gemini"][-20:]
    assert all(t.bid is not None and t.ask is not None and t.bid < t.ask for t in last)


async def test_keeps_retrying_while_connections_drop_then_recovers(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    sim.set_mode("gateio", "drop")
    fm = manager(sim_settings, registry, rec, exchanges=["gateio"])
    async with fm:
        await wait_for(lambda: fm.health()["gateio"]["reconnects"] >= 3, 10, "repeated reconnects")
        sim.set_mode("gateio", "normal")
        await wait_for(
            lambda: sim.active("gateio") == 1 and fm.health()["gateio"]["state"] == "connected", 5, "stable connection"
        )
        n = rec.count("gateio")
        await wait_for(lambda: rec.count("gateio") > n + 10, 5, "ticks after recovery")


async def test_down_exchange_backs_off_and_recovers(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    sim.set_mode("okx", "down")
    fm = manager(sim_settings, registry, rec, exchanges=["okx", "coinbase"])
    async with fm:
        await wait_for(lambda: fm.health()["okx"]["reconnects"] >= 3, 10, "refused connection retries")
        assert rec.count("okx") == 0 and fm.health()["okx"]["state"] in ("connecting", "backoff")
        assert rec.count("coinbase") > 0  # one exchange down does not affect the others
        sim.set_mode("okx", "normal")
        await wait_for(lambda: rec.count("okx") > 0, 5, "okx ticks after recovery")
        assert fm.health()["okx"]["state"] == "connected"


async def test_watchdog_recovers_from_silence(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    fm = manager(sim_settings, registry, rec, exchanges=["coinbase", "gemini"], watchdog_s=0.5)
    async with fm:
        await wait_for(lambda: rec.count("coinbase") > 0 and rec.count("gemini") > 0, 5, "first ticks")
        sim.set_mode("coinbase", "silent")
        await wait_for(lambda: fm.health()["coinbase"]["watchdog_timeouts"] >= 1, 5, "watchdog firing")
        assert fm.health()["coinbase"]["reconnects"] >= 1
        assert fm.health()["gemini"]["watchdog_timeouts"] == 0
        sim.set_mode("coinbase", "normal")
        n = rec.count("coinbase")
        await wait_for(lambda: rec.count("coinbase") > n + 5, 5, "ticks after silence")
        assert fm.health()["coinbase"]["last_message_age_s"] < 0.5


async def test_garbage_and_bad_prices_are_survived(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    for ex in EXCHANGES:
        sim.set_mode(ex, "garbage")
    fm = manager(sim_settings, registry, rec)
    async with fm:
        await wait_for(lambda: all(fm.health()[ex]["errors"] >= 10 for ex in EXCHANGES), 8, "garbage counted")
        counts = {ex: rec.count(ex) for ex in EXCHANGES}
        await wait_for(lambda: all(rec.count(ex) > counts[ex] + 5 for ex in EXCHANGES), 5, "ticks despite garbage")
        health = fm.health()
    for ex in EXCHANGES:
        assert health[ex]["reconnects"] == 0 and health[ex]["state"] == "connected", (ex, health[ex])
        assert health[ex]["last_error"]
    assert all(t.price.is_finite() and t.price > 0 for t in rec.ticks)


async def test_rejected_symbol_is_reported_while_the_rest_are_served(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    eth = {ex: registry.instrument("ETH", ex).symbol for ex in EXCHANGES}
    for ex, symbol in eth.items():
        sim.reject(ex, symbol)
    fm = manager(sim_settings, registry, rec)
    async with fm:
        await wait_for(
            lambda: all(fm.health()[ex]["unknown_symbols"] == [eth[ex]] for ex in EXCHANGES), 5, "rejections reported"
        )
        await wait_for(
            lambda: all(
                rec.count(ex, "BTC") > 2 and rec.count(ex, "SOL") > 2
                for ex in EXCHANGES
                if registry.instrument("SOL", ex)
            ),
            5,
            "others served",
        )
        assert all(t.asset != "ETH" for t in rec.ticks)
        # The exchange lists it again: after a reconnect it prices and is no longer unknown.
        for ex, symbol in eth.items():
            sim.accept(ex, symbol)
            sim.drop(ex)
        await wait_for(lambda: all(rec.count(ex, "ETH") > 0 for ex in EXCHANGES), 5, "ETH after re-listing")
        await wait_for(
            lambda: all(fm.health()[ex]["unknown_symbols"] == [] for ex in EXCHANGES), 5, "unknown list cleared"
        )


async def test_a_raising_callback_does_not_stop_the_feed(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry
) -> None:
    seen: Counter[str] = Counter()

    def flaky(tick: Tick) -> None:
        seen[tick.exchange] += 1
        if seen[tick.exchange] % 2:
            raise RuntimeError("book exploded")

    fm = FeedManager(sim_settings, registry, flaky, exchanges=["okx"], assets=FEW, connect_delay_s=0)
    async with fm:
        await wait_for(lambda: seen["okx"] > 20, 5, "ticks despite callback failures")
        h = fm.health()["okx"]
    assert h["errors"] >= 10 and h["reconnects"] == 0 and "book exploded" in h["last_error"]


async def test_instruments_are_split_across_connections(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    fm = manager(sim_settings, registry, rec, exchanges=["okx"], assets=None, max_per_connection={"okx": 50})
    n = len(registry.instruments_for("okx"))
    async with fm:
        assert fm.health()["okx"]["connections"] == -(-n // 50)
        await wait_for(lambda: sim.active("okx") == 3, 5, "three connections")
        await wait_for(lambda: len({t.asset for t in rec.ticks}) > 100, 8, "ticks from every connection")
        assert fm.health()["okx"]["state"] == "connected" and fm.health()["okx"]["symbols"] == n


async def test_stop_is_prompt_and_idempotent(
    sim: Simulator, sim_settings: Settings, registry: AssetRegistry, rec: Recorder
) -> None:
    fm = manager(sim_settings, registry, rec, exchanges=list(EXCHANGES))
    await fm.start()
    await wait_for(lambda: all(rec.count(ex) > 0 for ex in EXCHANGES), 5, "ticks")
    started = time.monotonic()
    await fm.stop()
    assert time.monotonic() - started < 3
    await fm.stop()
    n = len(rec.ticks)
    await asyncio.sleep(0.2)
    assert len(rec.ticks) == n
    await wait_for(lambda: all(sim.active(ex) == 0 for ex in EXCHANGES), 3, "server side closed")
