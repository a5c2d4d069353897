"""No tenant pays for another, the exchanges are protected, junk creates no rows (issue 12).

Real LPO servers (in process) over the exchange simulator: one key's options (`max_age_ms`,
misses, many assets) never change what another key is billed or receives; REST calls per
(exchange, asset) are bounded whatever the callers ask; refusals and unknown asset names
leave no per-asset usage rows.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import in_process_server, stack_env
from websockets.asyncio.client import connect

from trinity_beast.domain.tick import Tick
from trinity_beast.services.sync import move_all

WINDOW_S = 4.0


async def count_pushes(url: str, secret: str, seconds: float) -> int:
    """Updates of BTC one subscriber receives in `seconds` (after its first one)."""
    async with connect(url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}") as ws:
        await ws.send('{"subscribe": ["BTC"]}')
        while True:  # the subscription reply, then the first price
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get("data", {}).get("type") == "price":
                break
        pushes = 0
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            if msg.get("data", {}).get("type") == "price":
                pushes += 1
    return pushes


class Looper:
    """Another key asking `/price?asset=BTC&max_age_ms=1` as fast as it can, in a thread."""

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        self.statuses: Counter = Counter()
        self.unmet = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Looper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self._stop.is_set():
                r = c.get("/price?asset=BTC&max_age_ms=1", headers={"Authorization": f"Bearer {self.secret}"})
                self.statuses[r.status_code] += 1
                if r.status_code == 200 and r.json()["data"]["assets"][0].get("max_age_met") is False:
                    self.unmet += 1


def test_another_keys_max_age_loop_does_not_change_a_subscribers_bill(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Probe row 7: a subscriber watches BTC; its pushes are counted for 4 s alone, then for
    4 s while another key loops `max_age_ms=1`. Both stay within the push cap (10/s per asset);
    the loop causes at most one REST call a second, whose prices are not pushed to a subscriber
    that has a price already; the looper is told its max age was not met."""
    env = stack_env(request, "embedded", tmp_path)
    with in_process_server(env, sim=True, feeds=True) as srv:
        _, subscriber = srv.create_key("subscriber", monthly_limit=1_000_000)
        _, other = srv.create_key("subscriber", monthly_limit=1_000_000)
        cap = srv.rt.settings.ws_max_pushes_per_s * WINDOW_S + 2
        asyncio.run(count_pushes(srv.url, subscriber, WINDOW_S))  # while the feeds connect: not counted
        alone = asyncio.run(count_pushes(srv.url, subscriber, WINDOW_S))
        srv.sim.reset_counters()
        with Looper(srv.url, other) as looper:
            deadline = time.time() + 30
            while not looper.statuses:  # the loop is running
                assert time.time() < deadline
                time.sleep(0.05)
            started = time.monotonic()
            shared = asyncio.run(count_pushes(srv.url, subscriber, WINDOW_S))
            elapsed = time.monotonic() - started
        rest_calls = srv.sim.ticker_calls
        print(
            f"pushes alone {alone}, with another key's max_age_ms=1 loop {shared}; "
            f"loop answers {dict(looper.statuses)} ({looper.unmet} max_age not met); REST calls {dict(rest_calls)}"
        )
        assert 0 < alone <= cap and 0 < shared <= cap
        assert shared <= alone * 1.5 + 3  # the feed's own pace (it varies a little), nothing from the loop
        assert sum(looper.statuses.values()) > 20 and set(looper.statuses) == {200}
        assert looper.unmet > 0
        for (exchange, asset), n in rest_calls.items():
            assert n <= elapsed / srv.rt.settings.rest_min_interval_s + 2, (exchange, asset, n)


def test_rest_calls_are_bounded_per_exchange_and_asset(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Probe row 8: 100 concurrent `max_age_ms=1` requests for BTC and 20 for 20 assets each,
    with no feed (every price from REST): at most one REST call per (exchange, asset) within the
    interval (30 s here), and every request answered with what is held, saying so."""
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_REST_MIN_INTERVAL_S": "30"}
    with in_process_server(env, sim=True) as srv:
        assets = [a for a in srv.rt.registry.assets if a not in ("USDT", "USDC")][:20]
        auth = {"Authorization": f"Bearer {srv.admin_key}"}

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                asks = [c.get("/price?asset=BTC&max_age_ms=1", headers=auth) for _ in range(100)]
                asks += [c.get(f"/price?asset={','.join(assets)}&max_age_ms=1", headers=auth) for _ in range(20)]
                return await asyncio.gather(*asks)

        srv.sim.reset_counters()
        answers = asyncio.run(burst())
        again = asyncio.run(burst())  # everything held now: no new call at all
        calls = srv.sim.ticker_calls
        print(f"{len(answers) + len(again)} requests -> REST calls {sum(calls.values())} {dict(calls)}")
        assert calls and max(calls.values()) == 1, calls
        assert len({asset for _, asset in calls}) <= len(set(assets) | {"BTC"})
        statuses = Counter(r.status_code for r in answers + again)
        assert set(statuses) == {200}, statuses
        held = [a for r in again for a in r.json()["data"]["assets"]]
        assert held and all(a["max_age_met"] is False and "at most one REST call" in a["note"] for a in held)


def junk_names(rng: random.Random, n: int) -> str:
    return ",".join("ZQ" + "".join(rng.choices(string.ascii_uppercase, k=12)) for _ in range(n))


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_refusals_and_unknown_assets_create_no_usage_rows(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    """Probe row 11: an exhausted key sends 500 requests of 50 random unknown names; a live key
    100 of them (404s); bad requests (400) and bad keys (401) too. The usage rows that result
    are a handful, labelled with a known asset or `-`, whatever the number of requests."""
    with in_process_server(stack_env(request, stack, tmp_path)) as srv:
        now = time.time()
        srv.call(srv.rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now, now)))
        exhausted_id, exhausted = srv.create_key("subscriber", monthly_limit=3)
        live_id, live = srv.create_key("subscriber", monthly_limit=1_000_000)
        rng = random.Random(12)
        statuses: Counter = Counter()

        async def run() -> None:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60, limits=httpx.Limits(max_connections=20)) as c:
                for _ in range(5):
                    statuses[
                        (await c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {exhausted}"})).status_code
                    ] += 1
                for batch in range(10):
                    asks = [
                        c.get(f"/price?asset={junk_names(rng, 50)}", headers={"Authorization": f"Bearer {exhausted}"})
                        for _ in range(50)
                    ]
                    asks += [
                        c.get(f"/price?asset={junk_names(rng, 50)}", headers={"Authorization": f"Bearer {live}"})
                        for _ in range(10)
                    ]
                    asks += [c.get("/price?asset=BAD$NAME" + str(batch), headers={"Authorization": f"Bearer {live}"})]
                    asks += [c.get("/price?asset=BTC", headers={"Authorization": "Bearer tbk_not_a_key_0000000000"})]
                    for r in await asyncio.gather(*asks):
                        statuses[r.status_code] += 1

        asyncio.run(run())
        assert statuses == Counter({200: 3, 429: 502, 404: 100, 400: 10, 401: 10}), statuses
        srv.call(srv.rt.meter.flush())
        srv.call(move_all(srv.rt.cache, srv.rt.db))  # every bucket, open minutes too, into the database
        rows = srv.rt.db.query("SELECT api_key_id, asset, status, requests FROM usage_buckets")
        mine = [r for r in rows if r[0] in (exhausted_id, live_id)]
        print(f"{sum(statuses.values())} requests -> {len(mine)} usage rows: {mine}")
        assert {r[1] for r in mine} <= {"BTC", "-"}
        assert len(mine) <= 2 * 2 * 3  # per key: BTC/200 and -/429, -/404, -/400, in at most two minutes
        assert sum(r[3] for r in mine if r[2] == 200) == 3
