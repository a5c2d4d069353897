"""Live prices end to end: simulator -> real connectors -> feeds -> cache -> GET /price."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import UNREACHABLE_EXCHANGES, in_process_server, stack_env, start_beast_serve, stop_beast

from trinity_beast.domain.settings import EXCHANGES


def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = fn()
        if ok(value) or time.time() > deadline:
            return value
        time.sleep(0.02)


def price(srv: Any, query: str) -> httpx.Response:
    with srv.client() as c:
        return c.get(f"/price?{query}", headers={"Authorization": f"Bearer {srv.admin_key}"})


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_fresh_prices_from_the_simulator_and_a_median_of_six(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    with in_process_server(stack_env(request, stack, tmp_path), sim=True, feeds=True) as srv:
        body = poll(lambda: price(srv, "asset=BTC,ETH,SOL").json(), lambda b: len(b["data"]["assets"]) == 3).copy()
        assert [a["asset"] for a in body["data"]["assets"]] == ["BTC", "ETH", "SOL"]
        for entry in body["data"]["assets"]:
            assert entry["exchange"] == "coinbase-ws" and entry["cached"] is True
            assert entry["cache_age_seconds"] < 5

        median = poll(
            lambda: price(srv, "asset=BTC&aggregate=median").json(),
            lambda b: b["data"]["assets"] and len(b["data"]["assets"][0]["sources"]) == 6,
        )["data"]["assets"][0]
        assert median["exchange"] == "median"
        assert sorted(s["exchange"] for s in median["sources"]) == sorted(f"{e}-ws" for e in EXCHANGES)
        kept = sorted(Decimal(str(s["price"])) for s in median["sources"] if not s["rejected"])
        assert kept[0] <= Decimal(str(median["price"])) <= kept[-1]
        # Gate and OKX quote BTC in USDT: their prices arrive converted, and say so.
        converted = {s["exchange"]: s.get("converted_from") for s in median["sources"]}
        assert converted["okx-ws"] == "USDT" and converted["gateio-ws"] == "USDT"
        assert converted["coinbase-ws"] is None

        health = srv.rt.health()["feeds"]
        assert {name: h["state"] for name, h in health.items()} == {e: "connected" for e in EXCHANGES}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_one_exchange_pointed_at_real_messages_is_served_within_a_second(
    request: pytest.FixtureRequest, tmp_path: Path, exchange: str
) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_EXCHANGE_PRIORITY": exchange}
    # Only this exchange (and Coinbase, for the USDT/USD rate) talk to the simulator.
    env["TEST_SIM_ONLY"] = ",".join(sorted({exchange, "coinbase"}))
    with in_process_server(env, sim=True, feeds=True) as srv:
        started = time.time()
        body = poll(
            lambda: price(srv, "asset=BTC").json(),
            lambda b: b["status_code"] == 200 and b["data"]["assets"][0]["exchange"] == f"{exchange}-ws",
            timeout=5,
        )
        assert body["data"]["assets"][0]["exchange"] == f"{exchange}-ws"
        # Connecting included; Crypto.com asks clients to wait ~1 s before subscribing.
        assert time.time() - started < (2.5 if exchange == "cryptocom" else 1.5)


def test_usdt_prices_are_converted_with_the_live_rate(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_EXCHANGE_PRIORITY": "okx"}
    with in_process_server(env, sim=True, feeds=True) as srv:
        srv.sim.set_price("USDT", "0.9950")
        srv.sim.set_price("BTC", "60000")
        entry = poll(
            lambda: price(srv, "asset=BTC").json()["data"]["assets"],
            lambda a: a and a[0]["exchange"] == "okx-ws" and a[0].get("converted_from", {}).get("usd_rate") == 0.995,
        )[0]
        assert entry["converted_from"] == {"quote": "USDT", "usd_rate": 0.995}
        assert entry["price"] == pytest.approx(60000 * 0.995, rel=1e-9)


def test_a_miss_uses_the_rest_fallback_once_for_many_concurrent_askers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # No feeds: nothing is cached, every price must come from a REST ticker call.
    with in_process_server(stack_env(request, "production", tmp_path), sim=True, feeds=False) as srv:
        srv.sim.set_price("USDT", "1.0")
        srv.sim.reset_counters()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: price(srv, "asset=ETH"), range(100)))
        assert {a.status_code for a in answers} == {200}
        entries = [a.json()["data"]["assets"][0] for a in answers]
        assert {e["exchange"] for e in entries} == {"coinbase-rest"}
        assert any(e["cached"] is False for e in entries)
        assert sum(srv.sim.rest_calls.values()) == 1
        # The fetched price was cached: the next request is served from it.
        again = price(srv, "asset=ETH").json()["data"]["assets"][0]
        assert again["cached"] is True and again["exchange"] == "coinbase-rest"


def test_the_fallback_tries_exchanges_in_priority_order(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with in_process_server(stack_env(request, "embedded", tmp_path), sim=True, feeds=False) as srv:
        srv.sim.set_mode("coinbase", "down")
        srv.sim.reset_counters()
        entry = price(srv, "asset=SOL").json()["data"]["assets"][0]
        assert entry["exchange"] == "kraken-rest" and entry["cached"] is False
        assert srv.sim.rest_calls["coinbase"] == 1 and srv.sim.rest_calls["kraken"] == 1
        for ex in EXCHANGES:
            srv.sim.set_mode(ex, "down")
        body = price(srv, "asset=ADA").json()
        assert body["status_code"] == 404
        reason = body["data"]["failed"][0]["reason"]
        assert reason.startswith("no live price: coinbase: HTTP 503")
        assert "kraken: HTTP 503" in reason


def test_max_age_refuses_an_old_price(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from trinity_beast.domain.tick import Tick

    with in_process_server(stack_env(request, "embedded", tmp_path)) as srv:
        now = time.time()
        srv.call(srv.rt.cache.put_tick(Tick("BTC", "USD", Decimal("1"), None, None, "coinbase", now - 3, now - 3)))
        poll(lambda: price(srv, "asset=BTC").status_code, lambda s: s == 200)
        assert price(srv, "asset=BTC&max_age_ms=10000").status_code == 200
        body = price(srv, "asset=BTC&max_age_ms=500").json()
        assert body["status_code"] == 404
        reason = body["data"]["failed"][0]["reason"]
        assert reason.startswith("price of BTC is ") and "older than max_age_ms=500" in reason
        for bad, error in (
            ("max_age_ms=soon", "max_age_ms must be a whole number of milliseconds (digits 0-9), got 'soon'"),
            ("max_age_ms=0", "max_age_ms must be between 1 and 86400000, got 0"),
            (
                "aggregate=mean",
                "unknown aggregate 'mean': use aggregate=median, or leave it out for the priority price",
            ),
        ):
            r = price(srv, f"asset=BTC&{bad}")
            assert r.status_code == 400 and r.json()["error"] == error


def test_feeds_survive_garbage_drops_and_silence(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_EXCHANGE_PRIORITY": "kraken"}
    with in_process_server(env, sim=True, feeds=True) as srv:

        def kraken_ticks() -> int:
            return srv.rt.feeds.health()["kraken"]["ticks"]

        poll(kraken_ticks, lambda n: n > 0)
        srv.sim.set_mode("kraken", "garbage")
        before = srv.rt.feeds.health()["kraken"]["errors"]
        poll(lambda: srv.rt.feeds.health()["kraken"]["errors"], lambda n: n > before)
        srv.sim.set_mode("kraken", "drop")
        time.sleep(0.8)
        srv.sim.set_mode("kraken", "normal")
        reconnects = srv.rt.feeds.health()["kraken"]["reconnects"]
        assert reconnects >= 1
        ticks = kraken_ticks()
        assert poll(kraken_ticks, lambda n: n > ticks) > ticks
        assert price(srv, "asset=BTC").json()["data"]["assets"][0]["exchange"] == "kraken-ws"


def test_an_unknown_symbol_is_reported_and_the_rest_served(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {
        **stack_env(request, "embedded", tmp_path),
        "BEAST_EXCHANGE_PRIORITY": "okx",
        "TEST_SIM_ONLY": "okx,coinbase",
    }
    with in_process_server(env, sim=True, feeds=False) as srv:
        srv.sim.reject("okx", "ETH-USDT")
        srv.call(_start_feeds(srv))
        health = poll(lambda: srv.rt.feeds.health()["okx"], lambda h: "ETH-USDT" in h["unknown_symbols"])
        assert "ETH-USDT" in health["unknown_symbols"]
        entry = poll(
            lambda: price(srv, "asset=BTC").json()["data"]["assets"], lambda a: a and a[0]["exchange"] == "okx-ws"
        )
        assert entry[0]["exchange"] == "okx-ws"


async def _start_feeds(srv: Any) -> None:
    from trinity_beast.services.prices.ingest import start_feeds

    await start_feeds(srv.rt)


def test_beast_serve_sim_shows_moving_prices(tmp_path: Path) -> None:
    env = {"BEAST_DATA_DIR": str(tmp_path / "data"), **UNREACHABLE_EXCHANGES}
    p = start_beast_serve(env, cwd=tmp_path, args=("--sim",))
    try:
        secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))
        headers = {"Authorization": f"Bearer {secret}"}

        def btc() -> dict:
            r = httpx.get(p.url + "/price?asset=BTC", headers=headers)
            return r.json()["data"]["assets"][0] if r.status_code == 200 else {}

        first = poll(btc, lambda e: e.get("exchange") == "coinbase-ws")
        assert first["exchange"] == "coinbase-ws"
        moved = poll(btc, lambda e: e.get("price") != first["price"])
        assert moved["price"] != first["price"]
        listing = httpx.get(p.url + "/ws/assets").json()
        assert listing["data"]["count"] == 150
        assert listing["status"] == "✅ [LPO] [us-east-2] [BeastMain] [/ws/assets] [200]"
    finally:
        code, err = stop_beast(p)
    assert code == 0, err
