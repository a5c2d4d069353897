"""Redis goes away under load: prices keep coming from the process, usage is kept and counted exactly.

The LPO talks to the shared Redis through a fault proxy (tests/integration/faultproxy.py) that refuses
or stalls connections on demand, so only this test's connections break. Counts are read
straight from Redis afterwards and must equal what the clients were answered.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import counted, wait_until
from faultproxy import fault_proxy
from support import InProcessServer, in_process_server, stack_env

from trinity_beast.domain.tick import Tick

ASSETS = ("BTC", "ETH")


def put(srv: InProcessServer, asset: str, price: str) -> None:
    now = time.time()
    srv.call(srv.rt.cache.put_tick(Tick(asset, "USD", Decimal(price), None, None, "coinbase", now, now)))


class Load:
    """HTTP and UDP clients asking for held prices until stopped; every answer is tallied."""

    def __init__(self, srv: InProcessServer, secret: str, http_threads: int = 3) -> None:
        self.srv = srv
        self.secret = secret
        self.answers: Counter = Counter()  # (protocol, status) -> n
        self.stale_seen = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._http, daemon=True) for _ in range(http_threads)]
        self._threads.append(threading.Thread(target=self._udp, daemon=True))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _tally(self, protocol: str, body: dict) -> None:
        with self._lock:
            self.answers[(protocol, body["status_code"])] += 1
            if body["status_code"] == 200 and any(a.get("stale") for a in body["data"]["assets"]):
                self.stale_seen += 1

    def _http(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        with httpx.Client(base_url=self.srv.url, timeout=30) as c:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    r = c.get(f"/price?asset={ASSETS[i % 2]}", headers=headers)
                    self._tally("http", r.json())
                except Exception as exc:  # a client error is a failure of the test, kept for the message
                    self.errors.append(f"http: {type(exc).__name__}: {exc}")
                    time.sleep(0.05)

    def _udp(self) -> None:
        payload = json.dumps({"asset": "BTC", "api_key": self.secret}).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            while not self._stop.is_set():
                sock.sendto(payload, ("127.0.0.1", self.srv.udp_port))
                try:
                    data, _ = sock.recvfrom(4096)
                except TimeoutError:
                    self.errors.append("udp: no answer in 10 s")
                    continue
                self._tally("udp", json.loads(data))
                time.sleep(0.002)


@pytest.mark.parametrize("fault,outage_s", [("refuse", 10.0), ("stall", 6.0)])
def test_redis_outage_under_load_keeps_prices_and_loses_no_count(
    request: pytest.FixtureRequest, tmp_path: Path, redis_namespace: str, fault: str, outage_s: float
) -> None:
    with fault_proxy("127.0.0.1", 6379) as proxy:
        env = stack_env(request, "production", tmp_path)
        # A limited key is served through the outage from the offline allowance (docs/usage.md),
        # set here to cover the whole load; test_billing_processes.py covers the default.
        env.update(
            {
                "REDIS_URL": proxy.url("redis", "/0"),
                "BEAST_STALE_AFTER_S": "2",
                "BEAST_USAGE_OFFLINE_ALLOWANCE": "1000000",
            }
        )
        with in_process_server(env) as srv:
            for asset, price in zip(ASSETS, ("64000", "3000"), strict=False):
                put(srv, asset, price)
            wait_until(lambda: all(srv.rt.live.get(a) for a in ASSETS), 5, "prices in the process")
            key_id, secret = srv.create_key("subscriber", monthly_limit=10_000_000)

            with Load(srv, secret) as load, httpx.Client(base_url=srv.url, timeout=10) as probe:
                time.sleep(1.0)
                getattr(proxy, fault)()
                down_at = time.time()
                time.sleep(outage_s / 2)
                ready = probe.get("/ready").json()
                assert ready["status_code"] == 503 and ready["data"]["checks"]["cache"]["reachable"] is False
                time.sleep(max(0.0, outage_s - (time.time() - down_at)))
                buffered_during_outage = srv.rt.meter.pending()
                proxy.restore()
                time.sleep(2.0)

            assert not load.errors, load.errors[:5]
            assert set(load.answers) <= {("http", 200), ("udp", 200)}, load.answers  # no 5xx, no refusal
            assert load.answers[("http", 200)] > 100 and load.answers[("udp", 200)] > 10, load.answers
            assert load.stale_seen > 0  # past BEAST_STALE_AFTER_S the held price is served, marked stale
            assert buffered_during_outage > 0 and srv.rt.meter.flush_failures > 0

            # Redis is back: the buffered counts are flushed, whole, and the feed resumes.
            wait_until(lambda: srv.rt.meter.pending() == 0, 15, "usage flushed")
            wait_until(srv.rt.live.connected.is_set, 15, "the price subscription")
            per, month = counted(redis_namespace, key_id)
            assert per == load.answers
            assert month == sum(load.answers.values())
            put(srv, "BTC", "65000")
            wait_until(lambda: srv.rt.live.get("BTC")["coinbase"].price == Decimal("65000"), 10, "a fresh price")
            assert httpx.get(srv.url + "/ready", timeout=10).status_code == 200
