"""Fixtures for the exchange tests that connect: a running simulator and settings pointing at it
(the `registry` fixture is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from beast_sim import Simulator
from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import Settings


@pytest.fixture
async def sim(registry: AssetRegistry) -> AsyncIterator[Simulator]:
    # Fast heartbeats so keep-alive paths run within a test's lifetime.
    simulator = Simulator(
        registry=registry,
        seed=7,
        push_interval_s=0.05,
        updates_per_push=20,
        heartbeat_s={"cryptocom": 0.5, "gemini": 0.5, "coinbase": 0.3, "kraken": 0.3},
        heartbeat_reply_s=1.0,
        drop_after_s=0.3,
        rest_stall_s=3.0,
    )
    async with simulator:
        yield simulator


@pytest.fixture
def sim_settings(sim: Simulator) -> Settings:
    return Settings(ws_url_overrides=sim.ws_urls, rest_url_overrides=sim.rest_urls)
