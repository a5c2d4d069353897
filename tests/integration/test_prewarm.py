"""Prewarm: every registry asset gets a REST price, no exchange is called faster than its limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import in_process_server, stack_env

from trinity_beast.exchanges import CONNECTORS
from trinity_beast.services.prices.prewarm import plan, prewarm


def test_prewarm_prices_all_150_assets_within_rate_limits(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with in_process_server(stack_env(request, "production", tmp_path), sim=True, feeds=False) as srv:
        srv.sim.reset_counters()
        started = time.monotonic()
        result = srv.call(prewarm(srv.rt.rest), timeout=120)
        elapsed = time.monotonic() - started
        assert result.failed == {}
        assert sorted(result.priced) == sorted(srv.rt.registry.assets) and len(result.priced) == 150
        for exchange, calls in result.calls.items():
            assert srv.sim.rest_calls[exchange] == calls
            # n calls paced at `rate` need at least (n - 1) / rate seconds.
            assert elapsed >= (calls - 1) / CONNECTORS[exchange].rest_rate - 0.05, exchange
        cached = srv.call(srv.rt.cache.all_ticks())
        assert set(cached) == set(srv.rt.registry.assets)
        assert all(t.source == "rest" and t.in_usd for by_ex in cached.values() for t in by_ex.values())


def test_plan_spreads_assets_and_takes_stablecoins_in_usd(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with in_process_server(stack_env(request, "embedded", tmp_path)) as srv:
        queues = plan(srv.rt, list(srv.rt.registry.assets))
        assert sum(len(q) for q in queues.values()) == 150
        assert len(queues) >= 4  # spread, not all on the first exchange
        for ex, assets in queues.items():
            for asset in assets:
                assert srv.rt.registry.instrument(asset, ex) is not None
        for ex, assets in plan(srv.rt, ["USDT", "USDC"]).items():
            assert all(srv.rt.registry.instrument(a, ex).quote == "USD" for a in assets)
