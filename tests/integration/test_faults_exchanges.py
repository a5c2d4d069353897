"""Six exchanges misbehaving at once: the LPO keeps answering, excludes stale sources, recovers.

Over the exchange simulator with the real connectors and feed manager: one exchange goes
silent, one refuses connections, one drops them, one sends garbage, one floods with its clock
far ahead, and one has its clock far behind. Nothing may crash, memory must stay bounded, stale sources must leave the
median, and every feed must come back when its exchange behaves again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import in_process_server, stack_env

from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.services.metrics import resident_memory_bytes

FAULTS = {
    "kraken": "silent",
    "gemini": "garbage",
    "gateio": "down",
    "cryptocom": "drop",
    "okx": "flood",
}  # + error frames
SKEWS = {"okx": 1e12, "coinbase": -3e8}  # ~31,000 years ahead (past any datetime); ~9.5 years behind


def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while True:
        value = fn()
        if ok(value):
            return value
        assert time.time() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(0.05)


def shown_at(entry: dict) -> float:
    return entry["timestamp_ms"] / 1000  # the exchange's time to the millisecond (`timestamp` is whole seconds)


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_all_six_exchanges_misbehaving_at_once(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_STALE_AFTER_S": "3"}
    # Every symbol in every push: a healthy source is never stale because its turn did not come.
    with (
        in_process_server(env, sim=True, feeds=True, updates_per_push=200) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as c,
    ):
        auth = {"Authorization": f"Bearer {srv.admin_key}"}

        def median() -> dict:
            return c.get("/price?asset=BTC&aggregate=median", headers=auth).json()

        def sources(body: dict) -> set[str]:
            assets = body["data"]["assets"] if body["status_code"] == 200 else []
            return {s["exchange"].removesuffix("-ws") for s in assets[0]["sources"]} if assets else set()

        poll(median, lambda b: sources(b) == set(EXCHANGES), 15, "six fresh sources")
        assert c.get("/ready").status_code == 200

        rss_before = resident_memory_bytes()
        for exchange, mode in FAULTS.items():
            srv.sim.set_mode(exchange, mode)
        srv.sim.drop("gateio")  # down: its open connection goes too, new ones are refused
        rejected = srv.rt.registry.instrument("SOL", "gemini").symbol
        srv.sim.reject("gemini", rejected)  # error frames for one symbol when it resubscribes...
        srv.sim.drop("gemini")  # ...after this drop
        for exchange, skew in SKEWS.items():
            srv.sim.set_clock_skew(exchange, skew)

        statuses: list[int] = []
        deadline = time.time() + 6
        while time.time() < deadline:  # the LPO keeps answering through all of it
            for query in ("asset=BTC&aggregate=median", "asset=ETH", "asset=SOL,ADA"):
                statuses.append(c.get(f"/price?{query}", headers=auth).status_code)
        assert set(statuses) == {200}, sorted(set(statuses))

        during = median()
        # Silent and refused exchanges left the median once stale; the others still count.
        assert {"kraken", "gateio"}.isdisjoint(sources(during)), sources(during)
        assert "coinbase" in sources(during) and "okx" in sources(during), srv.rt.feeds.health()
        best = c.get("/price?asset=BTC", headers=auth).json()["data"]["assets"][0]
        assert best["exchange"] == "coinbase-ws" and best["cache_age_seconds"] < 3
        # A clock far behind is shown as the exchange said; one far ahead is not believed (the
        # median shows its newest source's time, which would be OKX's 31,000 years ahead).
        assert abs(shown_at(best) - (time.time() + SKEWS["coinbase"])) < 60
        assert abs(shown_at(during["data"]["assets"][0]) - time.time()) < 60

        health = srv.rt.feeds.health()
        assert health["okx"]["messages"] > 2000  # the flood arrived...
        assert resident_memory_bytes() - rss_before < 80 * 2**20  # ...and memory stayed bounded
        assert health["gemini"]["errors"] > 0 and health["gateio"]["reconnects"] > 0
        assert health["cryptocom"]["reconnects"] > 0 and rejected in health["gemini"]["unknown_symbols"]
        metrics = c.get("/metrics").text
        assert metric(metrics, "beast_feed_up", exchange="kraken") == 0
        assert metric(metrics, "beast_feed_up", exchange="coinbase") == 1

        srv.sim.reset()  # every exchange behaves again: every feed recovers
        poll(median, lambda b: sources(b) == set(EXCHANGES), 30, "six fresh sources again")
        metrics = c.get("/metrics").text
        assert [metric(metrics, "beast_feed_up", exchange=e) for e in EXCHANGES] == [1.0] * 6
        assert c.get("/ready").status_code == 200
