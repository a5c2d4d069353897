"""Stopping `beast serve`: SIGTERM drains and flushes (nothing lost); SIGKILL loses at most one flush.

Both run a real `beast serve` child on Redis and PostgreSQL; counts are read straight from
Redis after the process is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import counted
from support import BeastProcess, run_beast, stack_env, start_beast_serve
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache.redis import RedisCache

SLOW_S = 1.5


class _Slow(BaseHTTPRequestHandler):
    """An exchange REST API that takes SLOW_S to refuse: keeps a request in flight."""

    def do_GET(self) -> None:
        time.sleep(SLOW_S)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_exchange() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v3/brokerage"
    server.shutdown()


def serve(request: pytest.FixtureRequest, tmp_path: Path, extra: dict[str, str]) -> tuple[BeastProcess, str, str, str]:
    env = stack_env(request, "production", tmp_path)
    env.update({"BEAST_FEEDS": "false", "BEAST_PREWARM": "false", "BEAST_SYNC_EVERY_S": "3600", **extra})
    proc = start_beast_serve(env, cwd=tmp_path)
    created = json.loads(
        run_beast(["keys", "create", "--name", "client", "--tier", "subscriber", "--json"], env).stdout
    )

    async def put() -> None:
        cache = RedisCache(env["REDIS_URL"], namespace=env["BEAST_REDIS_NAMESPACE"])
        now = time.time()
        await cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now, now))
        await cache.close()

    asyncio.run(put())
    return proc, created["id"], created["key"], env["BEAST_REDIS_NAMESPACE"]


def udp_price(port: int, secret: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(json.dumps({"asset": "BTC", "api_key": secret}).encode(), ("127.0.0.1", port))
        return json.loads(sock.recvfrom(4096)[0])["status_code"]


def test_sigterm_drains_connections_and_flushes_every_count(
    request: pytest.FixtureRequest, tmp_path: Path, slow_exchange: str
) -> None:
    proc, key_id, secret, namespace = serve(
        request, tmp_path, {"BEAST_COINBASE_REST_URL": slow_exchange, "BEAST_EXCHANGE_PRIORITY": "coinbase"}
    )
    auth = {"Authorization": f"Bearer {secret}"}
    expected: Counter = Counter()
    with httpx.Client(base_url=proc.url, timeout=10) as c:
        while c.get("/price?asset=BTC", headers=auth).status_code != 200:
            time.sleep(0.05)
        expected[("http", 200)] += 1
        for _ in range(39):
            assert c.get("/price?asset=BTC", headers=auth).status_code == 200
            expected[("http", 200)] += 1
    for _ in range(10):
        assert udp_price(int(proc.env["BEAST_LPO_UDP_PORT"]), secret) == 200
        expected[("udp", 200)] += 1

    async def scenario() -> tuple[int, int | None, int]:
        """A WS client and a slow request are open when SIGTERM arrives."""
        ws_url = proc.url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}"
        async with connect(ws_url) as ws, httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
            await ws.send('{"subscribe": ["BTC"]}')
            prices = 0
            while prices == 0:
                msg = json.loads(await ws.recv())
                prices += msg.get("data", {}).get("type") == "price"
            in_flight = asyncio.create_task(c.get("/price?asset=ADA", headers=auth))  # no price held: slow REST
            await asyncio.sleep(0.3)
            os.kill(proc.proc.pid, signal.SIGTERM)
            slow = await in_flight  # answered in full, not cut
            code = None
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    prices += msg.get("data", {}).get("type") == "price"
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            return slow.status_code, code, prices

    slow_status, close_code, ws_prices = asyncio.run(scenario())
    assert proc.proc.wait(20) == 0, proc.stderr_path.read_text()
    assert slow_status == 404  # no exchange could price it, said in a complete envelope
    assert close_code in (1001, 1012), close_code  # a clean close, not a dropped socket
    expected[("http", 404)] += 1
    expected[("ws", 200)] += ws_prices
    per, _ = counted(namespace, key_id)
    assert per == expected


def test_sigkill_loses_at_most_the_last_flush_interval(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    proc, key_id, secret, namespace = serve(request, tmp_path, {"BEAST_USAGE_FLUSH_S": "1"})
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=proc.url, timeout=10) as c:
        while c.get("/price?asset=BTC", headers=auth).status_code != 200:
            time.sleep(0.05)
        for _ in range(49):
            assert c.get("/price?asset=BTC", headers=auth).status_code == 200
        time.sleep(2.5)  # more than two flush intervals: these 50 are in Redis now
        for _ in range(20):
            assert c.get("/price?asset=BTC", headers=auth).status_code == 200
    proc.proc.kill()
    proc.proc.wait(10)
    per, month = counted(namespace, key_id)
    assert 50 <= per[("http", 200)] <= 70 and per[("http", 200)] == month
