"""GET /metrics (Prometheus text, parsed with prometheus_client's own parser) and GET /ready."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import in_process_server, stack_env
from websockets.sync.client import connect

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.settings import EXCHANGES


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    found = [v for got, v in samples.get(name, []) if all(got.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def poll(fn: Any, ok: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while not ok(got := fn()):
        assert time.time() < deadline, f"timed out waiting for {what}: {got}"
        time.sleep(0.1)
    return got


def test_metrics_count_every_protocol_and_show_feeds_cache_usage_and_sync(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_STALE_AFTER_S": "2"}
    with in_process_server(env, sim=True, feeds=True, lrs=True) as srv:
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            poll(lambda: c.get("/price?asset=BTC", headers=auth).status_code, lambda s: s == 200, 15, "a price")
            before = scrape(srv.url)
            base = value(
                before, "beast_requests_total", service="LPO", endpoint="/price", protocol="http", status="200"
            )
            for _ in range(10):
                assert c.get("/price?asset=ETH", headers=auth).status_code == 200
            for _ in range(3):
                assert c.get("/price?asset=ETH").status_code == 401
            for _ in range(40):  # random paths must not create new series
                c.get(f"/{uuid.uuid4().hex}")
            assert c.get("/ready").status_code == 200
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for _ in range(4):
                sock.sendto(
                    json.dumps({"asset": "BTC", "api_key": srv.admin_key}).encode(), ("127.0.0.1", srv.udp_port)
                )
                assert json.loads(sock.recvfrom(4096)[0])["status_code"] == 200
        with connect(srv.url.replace("http://", "ws://") + f"/ws/prices?api_key={srv.admin_key}") as ws:
            ws.send('{"subscribe": ["BTC"]}')
            prices = 0
            while prices < 3:
                prices += json.loads(ws.recv(5)).get("data", {}).get("type") == "price"
        httpx.get(srv.lrs_url + "/reports/usage", headers=auth, timeout=10)

        m = scrape(srv.url)
        assert (
            value(m, "beast_requests_total", service="LPO", endpoint="/price", protocol="http", status="200")
            == base + 10
        )
        assert value(m, "beast_requests_total", service="LPO", endpoint="/price", protocol="http", status="401") == 3
        assert value(m, "beast_requests_total", service="LPO", endpoint="other", protocol="http", status="404") == 40
        assert value(m, "beast_requests_total", service="LPO", endpoint="/price", protocol="udp", status="200") == 4
        assert value(m, "beast_requests_total", service="WS", endpoint="/ws/prices", protocol="ws", status="200") >= 3
        assert (
            value(m, "beast_requests_total", service="LRS", endpoint="/reports/usage", protocol="http", status="200")
            == 1
        )
        count = value(m, "beast_request_duration_seconds_count", service="LPO", endpoint="/price", protocol="http")
        assert count == base + 13
        assert (
            value(
                m, "beast_request_duration_seconds_bucket", service="LPO", endpoint="/price", protocol="http", le="+Inf"
            )
            == count
        )
        assert {labels["exchange"] for labels, _ in m["beast_feed_up"]} == set(EXCHANGES)
        assert all(v == 1 for _, v in m["beast_feed_up"]) and value(m, "beast_feed_ticks_total", exchange="okx") > 0
        assert value(m, "beast_cache_up") == 1 and value(m, "beast_prices_held_assets") > 100
        assert value(m, "beast_ws_deliveries_total") >= 3
        for name in (
            "beast_usage_buffered_requests",
            "beast_usage_flush_failures_total",
            "beast_sync_runs_total",
            "beast_sync_failures_total",
            "process_resident_memory_bytes",
            "beast_uptime_seconds",
        ):
            assert name in m, name
        assert scrape(srv.lrs_url)  # the LRS serves the same figures
        assert httpx.get(srv.lrs_url + "/ready", timeout=10).status_code == 200

        # Every exchange goes quiet: prices turn stale and the LPO says it is not ready.
        for exchange in EXCHANGES:
            srv.sim.set_mode(exchange, "silent")
        body = poll(
            lambda: httpx.get(srv.url + "/ready", timeout=10).json(), lambda b: b["status_code"] == 503, 15, "503"
        )
        assert body["error"].startswith("not ready: no fresh price feed") and body["data"]["checks"]["cache"]["ok"]
        assert tuple(body) == FIELDS
        assert all(v == 0 for _, v in scrape(srv.url)["beast_feed_up"])
        srv.sim.reset()
        poll(lambda: httpx.get(srv.url + "/ready", timeout=10).status_code, lambda s: s == 200, 15, "ready again")
