"""Exact monthly limits over real `beast serve` processes (docs/usage.md, the billing rule).

A unit is one price delivered: an asset in a 200 answer (HTTP or UDP) or one WebSocket update.
Every test counts the units its clients actually received and compares them with the limit.
Redis faults use a private redis-server (tests/private_redis.py), never the shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fault_support import wait_until
from private_redis import PrivateRedis
from support import UNREACHABLE_EXCHANGES, BeastProcess, run_beast, stack_env, start_beast_serve, stop_beast
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import MONTH_PREFIX, month_of
from trinity_beast.stores.cache.redis import RedisCache

LIMIT = 50
MIXED_LIMIT = 150  # more than the 100 UDP requests can take alone, so HTTP and WS get units too


def make_key(env: dict[str, str], limit: int) -> tuple[str, str]:
    made = run_beast(
        ["keys", "create", "--name", "billed", "--tier", "subscriber", "--monthly-limit", str(limit), "--json"], env
    )
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    return data["id"], data["key"]


def partner_secret(env: dict[str, str]) -> str:
    """An unlimited key to poll with, so the key under test is charged only by the test's requests."""
    made = run_beast(["keys", "create", "--name", "poller", "--tier", "partner", "--json"], env)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


async def put_prices(url: str, namespace: str, assets: tuple[str, ...] = ("BTC", "ETH"), base: int = 64000) -> None:
    cache = RedisCache(url, namespace=namespace)
    try:
        now = time.time()
        await cache.put_ticks(
            Tick(a, "USD", Decimal(base + i), None, None, "coinbase", now, now) for i, a in enumerate(assets)
        )
    finally:
        await cache.close()


def wait_for_prices(p: BeastProcess, assets: str = "BTC,ETH") -> None:
    """Poll with an unlimited key (not the key under test) until the process serves them."""
    auth = {"Authorization": f"Bearer {partner_secret(p.env)}"}
    deadline = time.time() + 60
    while True:
        r = httpx.get(f"{p.url}/price?asset={assets}", headers=auth, timeout=10)
        if r.status_code == 200 and not r.json()["data"]["failed"]:
            return
        assert time.time() < deadline, r.text
        time.sleep(0.1)


class Tally:
    """Units each protocol delivered to the key under test, and every status seen."""

    def __init__(self) -> None:
        self.units = {"http": 0, "udp": 0, "ws": 0}
        self.statuses: dict[int, int] = {}
        self.usage_seen: list[int] = []
        self._lock = threading.Lock()  # paced() may run in several threads

    def answer(self, protocol: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._answer(protocol, body)

    def _answer(self, protocol: str, body: dict[str, Any]) -> None:
        status = body["status_code"]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.units[protocol] += len(body["data"]["assets"])
            self.usage_seen.append(body["data"]["monthly_usage"])

    @property
    def total(self) -> int:
        return sum(self.units.values())


async def http_ask(client: httpx.AsyncClient, url: str, secret: str, assets: str, tally: Tally) -> None:
    r = await client.get(f"{url}/price", params={"asset": assets}, headers={"Authorization": f"Bearer {secret}"})
    tally.answer("http", r.json())


def udp_ask(port: int, secret: str, asset: str) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(30)
        sock.sendto(json.dumps({"asset": asset, "api_key": secret}).encode(), ("127.0.0.1", port))
        return json.loads(sock.recvfrom(8192)[0])


async def ws_watch(url: str, secret: str, tally: Tally, done: asyncio.Event) -> None:
    """Subscribe to BTC and count updates until the server ends the feed (the limit) or `done`."""
    ws_url = url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}"
    try:
        async with connect(ws_url) as ws:
            await ws.send('{"subscribe": ["BTC"]}')
            while not done.is_set():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    continue
                if msg.get("data") and msg["data"].get("type") == "price":
                    tally.units["ws"] += 1
                elif msg["status_code"] == 429:
                    tally.statuses[429] = tally.statuses.get(429, 0) + 1
    except ConnectionClosed as exc:  # closed for the limit, nothing else
        assert exc.rcvd is not None and exc.rcvd.code == 1008, (exc, tally.units, tally.statuses)


async def mixed_load(procs: list[BeastProcess], secret: str, tick: Any = None) -> Tally:
    """200 HTTP (one and two assets) + 100 UDP requests + 10 WebSocket subscribers, all at once,
    spread over the processes; returns when every request is answered and every feed ended."""
    tally = Tally()
    done = asyncio.Event()
    watchers = [asyncio.create_task(ws_watch(procs[i % len(procs)].url, secret, tally, done)) for i in range(10)]
    ticking = asyncio.create_task(tick(done)) if tick is not None else None
    deadline = time.time() + 60
    while tally.units["ws"] < 10:  # every subscriber has had its first update: all three protocols compete
        assert time.time() < deadline, tally.units
        await asyncio.sleep(0.05)

    async def udp(i: int) -> None:
        port = int(procs[i % len(procs)].env["BEAST_LPO_UDP_PORT"])
        tally.answer("udp", await asyncio.to_thread(udp_ask, port, secret, "BTC"))

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
        # Open the connections first (free /health calls), so HTTP competes with UDP from the start.
        await asyncio.gather(*(client.get(procs[i % len(procs)].url + "/health") for i in range(100)))
        calls = []
        for i in range(200):
            calls.append(http_ask(client, procs[i % len(procs)].url, secret, "BTC" if i % 2 else "BTC,ETH", tally))
            if i % 2:
                calls.append(udp(i))
        await asyncio.gather(*calls)
    # The key is exhausted now: every watcher's next update is refused and its feed closed.
    await asyncio.wait_for(asyncio.gather(*watchers), 120)
    done.set()
    if ticking is not None:
        await ticking
    return tally


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_a_limit_holds_across_http_udp_ws_and_processes(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    """Probe rows 1-4 and 6 of issue 12: limit 150, 300 concurrent requests (one and two assets)
    over HTTP and UDP plus 10 WebSocket subscribers; in production over two processes sharing
    one Redis. Units delivered == 150 exactly, and the month total says so."""
    env = {**stack_env(request, stack, tmp_path), "BEAST_PREWARM": "false", "BEAST_SYNC_EVERY_S": "3600"}
    procs: list[BeastProcess] = []
    try:
        if stack == "embedded":
            procs.append(start_beast_serve(env, cwd=tmp_path, args=("--sim",)))
            tick = None
        else:
            env["BEAST_FEEDS"] = "false"
            procs.append(start_beast_serve(env, cwd=tmp_path))
            procs.append(start_beast_serve(env, cwd=tmp_path))
            asyncio.run(put_prices(env["REDIS_URL"], env["BEAST_REDIS_NAMESPACE"]))

            async def tick(done: asyncio.Event) -> None:  # BTC keeps changing, so subscribers get updates
                i = 0
                while not done.is_set():
                    i += 1
                    await put_prices(env["REDIS_URL"], env["BEAST_REDIS_NAMESPACE"], ("BTC",), 64000 + i)
                    await asyncio.sleep(0.05)

        for p in procs:
            wait_for_prices(p)
        key_id, secret = make_key(env, MIXED_LIMIT)
        tally = asyncio.run(mixed_load(procs, secret, tick))
        assert tally.total == MIXED_LIMIT, (tally.units, tally.statuses)
        assert all(tally.units.values()), (tally.units, tally.statuses)  # every protocol took part
        assert set(tally.statuses) <= {200, 429}, (tally.units, tally.statuses)
        assert max(tally.usage_seen) <= MIXED_LIMIT
        me = httpx.get(procs[0].url + "/usage/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
        assert me["data"]["monthly_usage"] == MIXED_LIMIT and me["data"]["remaining"] == 0
        if stack == "production":
            r = redis.Redis.from_url(env["REDIS_URL"])
            month = int(r.hget(f"{env['BEAST_REDIS_NAMESPACE']}:{MONTH_PREFIX}{month_of(time.time())}", key_id))
            assert month == MIXED_LIMIT
        print(f"limit {MIXED_LIMIT}: units delivered {tally.units} = {tally.total}; statuses {tally.statuses}")
    finally:
        for p in procs:
            stop_beast(p)


def paced(p: BeastProcess, secret: str, per_s: float, until: Any, tally: Tally) -> None:
    """Ask for BTC at about `per_s` requests a second until `until(tally)` is true."""
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=p.url, timeout=60) as c:
        while not until(tally):
            started = time.monotonic()
            tally.answer("http", c.get("/price?asset=BTC", headers=auth).json())
            time.sleep(max(0.0, 1 / per_s - (time.monotonic() - started)))  # pacing, not waiting for an event


def refused_a_while(tally: Tally) -> bool:
    return tally.statuses.get(429, 0) >= 30


def test_a_paused_redis_never_lets_a_key_past_its_limit(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Probe row 5: limit 100 at 60 req/s while a private Redis is paused (SIGSTOP) for 3 s:
    100 served, never more; `monthly_usage` never goes down; the month total in Redis is 100
    once it is back (the units served from the offline allowance settled exactly once)."""
    private = PrivateRedis(tmp_path / "redis").start()
    try:
        env = {
            **stack_env(request, "production", tmp_path),
            "REDIS_URL": private.url,
            "BEAST_FEEDS": "false",
            "BEAST_PREWARM": "false",
            "BEAST_SYNC_EVERY_S": "3600",
        }
        p = start_beast_serve(env, cwd=tmp_path)
        try:
            asyncio.run(put_prices(private.url, env["BEAST_REDIS_NAMESPACE"]))
            wait_for_prices(p)
            key_id, secret = make_key(env, 100)
            tally = Tally()
            paced(p, secret, 60, lambda t: t.total >= 40, tally)
            private.pause()
            paused_at, before = time.monotonic(), tally.total
            paced(p, secret, 60, lambda t: time.monotonic() - paused_at >= 3.0, tally)
            private.resume()
            assert tally.total > before  # served meanwhile, from the offline allowance
            paced(p, secret, 60, refused_a_while, tally)
            assert tally.total == 100, tally.statuses
            assert tally.usage_seen == sorted(tally.usage_seen) and tally.usage_seen[-1] == 100
            month_key = f"{env['BEAST_REDIS_NAMESPACE']}:{MONTH_PREFIX}{month_of(time.time())}"
            client = private.client()
            wait_until(lambda: int(client.hget(month_key, key_id) or 0) == 100, 60, "the month total settled at 100")
            print(f"paused Redis: served {tally.total}, statuses {tally.statuses}")
        finally:
            stop_beast(p)
    finally:
        private.stop()


def test_a_redis_restarted_empty_is_detected_and_the_month_restored(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Probe row 10: a private Redis without persistence restarted empty under load. The loss
    is detected (log, /metrics, /ready), the month total restored (the key is not handed a
    fresh month: 300 served for a limit of 300) and /usage/me still says 300."""
    private = PrivateRedis(tmp_path / "redis").start()
    try:
        env = {
            **stack_env(request, "production", tmp_path),
            "REDIS_URL": private.url,
            "BEAST_FEEDS": "false",
            "BEAST_PREWARM": "false",
            "BEAST_SYNC_EVERY_S": "3600",
        }
        p = start_beast_serve(env, cwd=tmp_path)
        try:
            asyncio.run(put_prices(private.url, env["BEAST_REDIS_NAMESPACE"]))
            wait_for_prices(p)
            key_id, secret = make_key(env, 300)
            tally = Tally()
            paced(p, secret, 100, lambda t: t.total >= 150, tally)
            private.restart_empty()
            paced(p, secret, 100, refused_a_while, tally)
            assert tally.total == 300, tally.statuses
            assert tally.usage_seen == sorted(tally.usage_seen)
            metrics = httpx.get(p.url + "/metrics", timeout=10).text
            assert "beast_usage_cache_losses_total 1" in metrics, [m for m in metrics.splitlines() if "usage" in m]
            ready = httpx.get(p.url + "/ready", timeout=10).json()
            assert ready["data"]["checks"]["cache"]["usage_data_lost_at"] is not None
            assert "the cache lost its usage data" in p.stderr_path.read_text()
            month_key = f"{env['BEAST_REDIS_NAMESPACE']}:{MONTH_PREFIX}{month_of(time.time())}"
            assert int(private.client().hget(month_key, key_id)) == 300
            me = httpx.get(p.url + "/usage/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
            assert me["data"]["monthly_usage"] == 300
        finally:
            stop_beast(p)
    finally:
        private.stop()


def billed_in_sqlite(data_dir: Path, key_id: str) -> int:
    with sqlite3.connect(data_dir / "beast.db") as db:
        row = db.execute(
            "SELECT COALESCE(SUM(requests), 0) FROM usage_buckets WHERE api_key_id = ? AND status = 200", (key_id,)
        ).fetchone()
    return int(row[0])


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_sigkill_never_resets_a_quota(request: pytest.FixtureRequest, tmp_path: Path, stack: str) -> None:
    """Probe row 9: a limit-50 key asks 60 times, the process is SIGKILLed, a new one starts:
    the key is still refused and /usage/me says 50. Embedded: the counts reached SQLite within
    a flush interval (polled, then killed); production: the month total lives in Redis."""
    env = {**stack_env(request, stack, tmp_path), "BEAST_PREWARM": "false", **UNREACHABLE_EXCHANGES}
    args: tuple[str, ...] = ("--sim",) if stack == "embedded" else ()
    if stack == "production":
        env["BEAST_FEEDS"] = "false"
        asyncio.run(put_prices(env["REDIS_URL"], env["BEAST_REDIS_NAMESPACE"]))
    key_id, secret = make_key(env, LIMIT)
    auth = {"Authorization": f"Bearer {secret}"}
    p = start_beast_serve(env, cwd=tmp_path, args=args)
    try:
        wait_for_prices(p, "BTC")
        statuses = [httpx.get(p.url + "/price?asset=BTC", headers=auth, timeout=30).status_code for _ in range(60)]
        assert statuses == [200] * LIMIT + [429] * 10
        if stack == "embedded":
            data_dir = Path(env["BEAST_DATA_DIR"])
            wait_until(lambda: billed_in_sqlite(data_dir, key_id) == LIMIT, 30, "the counts in SQLite")
        os.kill(p.proc.pid, signal.SIGKILL)
        p.proc.wait(10)
    finally:
        if p.proc.poll() is None:
            stop_beast(p)
    p = start_beast_serve(env, cwd=tmp_path, args=args)
    try:
        wait_for_prices(p, "BTC")
        r = httpx.get(p.url + "/price?asset=BTC", headers=auth, timeout=30)
        assert r.status_code == 429, r.text
        me = httpx.get(p.url + "/usage/me", headers=auth, timeout=10).json()
        assert me["data"]["monthly_usage"] == LIMIT
    finally:
        stop_beast(p)


@pytest.mark.parametrize("assets", ["BTC", "BTC,ETH"])
@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_200_concurrent_max_age_requests_get_exactly_the_limit(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str, assets: str
) -> None:
    """Probe rows 1-2: limit 50, 200 concurrent `GET /price?asset=…&max_age_ms=1` (prices from
    the simulator's feeds and REST; production: two processes on one Redis). 50 units, exactly."""
    env = {**stack_env(request, stack, tmp_path), "BEAST_PREWARM": "false", "BEAST_SYNC_EVERY_S": "3600"}
    procs = [start_beast_serve(env, cwd=tmp_path, args=("--sim",))]
    try:
        if stack == "production":
            procs.append(start_beast_serve(env, cwd=tmp_path, args=("--sim",)))
        for p in procs:
            wait_for_prices(p)
        _, secret = make_key(env, LIMIT)
        tally = Tally()

        async def burst() -> None:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
                answers = await asyncio.gather(
                    *(
                        client.get(
                            f"{procs[i % len(procs)].url}/price",
                            params={"asset": assets, "max_age_ms": "1"},
                            headers={"Authorization": f"Bearer {secret}"},
                        )
                        for i in range(200)
                    )
                )
            for r in answers:
                tally.answer("http", r.json())

        asyncio.run(burst())
        print(f"{stack} {assets}: units {tally.total}, statuses {tally.statuses}")
        assert tally.total == LIMIT, tally.statuses
        assert set(tally.statuses) <= {200, 429}, tally.statuses
    finally:
        for p in procs:
            stop_beast(p)


def test_two_processes_over_a_paused_redis_stay_within_the_documented_bound(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Probe row 6, the bound: two processes share a private Redis that is paused for 3 s while
    both are asked. Served <= limit + (processes - 1) x BEAST_USAGE_OFFLINE_ALLOWANCE, and once
    Redis is back the month total equals what was served: billing stays exact either way."""
    allowance = 10
    private = PrivateRedis(tmp_path / "redis").start()
    procs: list[BeastProcess] = []
    try:
        env = {
            **stack_env(request, "production", tmp_path),
            "REDIS_URL": private.url,
            "BEAST_FEEDS": "false",
            "BEAST_PREWARM": "false",
            "BEAST_SYNC_EVERY_S": "3600",
            "BEAST_USAGE_OFFLINE_ALLOWANCE": str(allowance),
        }
        procs = [start_beast_serve(env, cwd=tmp_path), start_beast_serve(env, cwd=tmp_path)]
        asyncio.run(put_prices(private.url, env["BEAST_REDIS_NAMESPACE"]))
        for p in procs:
            wait_for_prices(p)
        key_id, secret = make_key(env, LIMIT)
        tally = Tally()

        def both(until: Any) -> None:
            threads = [threading.Thread(target=paced, args=(p, secret, 30, until, tally)) for p in procs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)

        both(lambda t: t.total >= 30)
        private.pause()
        paused_at = time.monotonic()
        both(lambda t: time.monotonic() - paused_at >= 3.0)
        private.resume()
        both(lambda t: t.statuses.get(429, 0) >= 40)
        print(
            f"two processes, paused Redis: served {tally.total} of limit {LIMIT} (bound {LIMIT + allowance}); "
            f"statuses {tally.statuses}"
        )
        assert LIMIT <= tally.total <= LIMIT + (len(procs) - 1) * allowance, tally.statuses
        month_key = f"{env['BEAST_REDIS_NAMESPACE']}:{MONTH_PREFIX}{month_of(time.time())}"
        client = private.client()
        wait_until(lambda: int(client.hget(month_key, key_id) or 0) == tally.total, 60, "the month total == served")
    finally:
        for p in procs:
            stop_beast(p)
        private.stop()


def test_ten_websocket_connections_of_one_key_get_exactly_the_limit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Probe row 4: one limit-50 key on 10 WebSocket connections (5 per process, two processes on
    one Redis) while BTC keeps changing: 50 updates in all, then every feed is closed (429, 1008)."""
    env = {
        **stack_env(request, "production", tmp_path),
        "BEAST_FEEDS": "false",
        "BEAST_PREWARM": "false",
        "BEAST_SYNC_EVERY_S": "3600",
    }
    procs = [start_beast_serve(env, cwd=tmp_path), start_beast_serve(env, cwd=tmp_path)]
    try:
        asyncio.run(put_prices(env["REDIS_URL"], env["BEAST_REDIS_NAMESPACE"]))
        for p in procs:
            wait_for_prices(p)
        key_id, secret = make_key(env, LIMIT)
        tally = Tally()

        async def run() -> None:
            done = asyncio.Event()
            watchers = [asyncio.create_task(ws_watch(procs[i % 2].url, secret, tally, done)) for i in range(10)]
            i = 0
            while not all(w.done() for w in watchers):  # ticks until every feed has been closed
                i += 1
                await put_prices(env["REDIS_URL"], env["BEAST_REDIS_NAMESPACE"], ("BTC",), 64000 + i)
                await asyncio.sleep(0.02)
                assert i < 6000, tally.units  # 2 minutes
            done.set()
            await asyncio.gather(*watchers)

        asyncio.run(run())
        print(f"10 WebSocket connections: {tally.units['ws']} updates, {tally.statuses.get(429, 0)} refusals")
        assert tally.units["ws"] == LIMIT and tally.statuses.get(429, 0) >= 1
        month_key = f"{env['BEAST_REDIS_NAMESPACE']}:{MONTH_PREFIX}{month_of(time.time())}"
        assert int(redis.Redis.from_url(env["REDIS_URL"]).hget(month_key, key_id)) == LIMIT
    finally:
        for p in procs:
            stop_beast(p)
