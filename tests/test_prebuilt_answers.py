"""Prebuilt /price answers (services/prices/splice.py) are the full path's answers, field for field.

Over a real server: the spliced bytes parse to the same envelope as the full path's (same
fields in the same order, the same values but for the per-request ones, which have the full
path's formats); a new tick, a staleness limit reached and a different asset list each take
the full path again; usage counts every spliced answer. The bytes come from HTTP and UDP.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from support import InProcessServer
from test_price_http import ISO_Z, assert_envelope, get_price, put, wait_served

PER_REQUEST = {
    "envelope": {"api_key_id", "timestamp"},
    "data": {"duration_ms", "monthly_usage", "monthly_limit", "usage_pct", "usage_warning"},
    "entry": {"cache_age_seconds", "latency_ms"},
}


def prebuilt(server: InProcessServer) -> Any:
    return server.rt.prices._prebuilt


def shape(value: Any) -> Any:
    """The keys (in order) and value types of an answer, recursively."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def without_per_request(body: dict) -> dict:
    data = {k: v for k, v in body["data"].items() if k not in PER_REQUEST["data"]}
    data["assets"] = [{k: v for k, v in e.items() if k not in PER_REQUEST["entry"]} for e in data["assets"]]
    return {**{k: v for k, v in body.items() if k not in PER_REQUEST["envelope"]}, "data": data}


def test_a_spliced_answer_is_the_full_answer(server: InProcessServer) -> None:
    put(server, "BTC", "64000.5")
    put(server, "ETH", "3000.25")
    wait_served(server, "BTC", 64000.5)
    wait_served(server, "ETH", 3000.25)
    built = prebuilt(server).built
    spliced = [get_price(server, "asset=BTC,ETH").json() for _ in range(3)]
    assert prebuilt(server).built == built + 1  # one template, then only splices
    full = get_price(server, "asset=BTC,ETH&max_age_ms=60000").json()  # max_age_ms: always the full path
    assert prebuilt(server).built == built + 1
    for body in spliced:
        assert_envelope(body, 200)
        assert shape(body) == shape(full)
        assert without_per_request(body) == without_per_request(full)
        assert body["api_key_id"] == server.admin_id and ISO_Z.match(body["timestamp"])
        assert [a["price"] for a in body["data"]["assets"]] == [64000.5, 3000.25]
        for entry in body["data"]["assets"]:
            assert 0 <= entry["cache_age_seconds"] < 60 and entry["latency_ms"] >= 0
    usage = [b["data"]["monthly_usage"] for b in spliced] + [full["data"]["monthly_usage"]]
    assert usage == list(range(usage[0], usage[0] + 4))  # every answer counted, in order


def test_a_new_tick_or_a_stale_price_takes_the_full_path_again(server: InProcessServer) -> None:
    put(server, "SOL", "150")
    wait_served(server, "SOL", 150.0)
    get_price(server, "asset=SOL")
    built = prebuilt(server).built
    assert get_price(server, "asset=SOL").json()["data"]["assets"][0]["price"] == 150.0
    assert prebuilt(server).built == built
    put(server, "SOL", "151")
    assert wait_served(server, "SOL", 151.0)["data"]["assets"][0]["price"] == 151.0  # never the old bytes
    assert prebuilt(server).built > built

    # A price 1 s short of the staleness limit: spliced now, the full path's stale answer after.
    stale_after = server.rt.settings.stale_after_s
    put(server, "DOGE", "0.1", age_s=stale_after - 1.0)
    body = wait_served(server, "DOGE", 0.1)
    assert "stale" not in body["data"]["assets"][0]
    deadline = time.time() + 30
    while "stale" not in body["data"]["assets"][0] and time.time() < deadline:
        time.sleep(0.1)
        body = get_price(server, "asset=DOGE").json()
    assert body["data"]["assets"][0].get("stale") is True  # the exchanges are unreachable: served stale


def test_udp_gets_the_same_spliced_answer(server: InProcessServer) -> None:
    put(server, "BTC", "64000.5")
    wait_served(server, "BTC", 64000.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(json.dumps({"asset": "BTC", "api_key": server.admin_key}).encode(), ("127.0.0.1", server.udp_port))
        udp = json.loads(s.recvfrom(4096)[0])
    http = get_price(server, "asset=BTC").json()
    assert without_per_request(udp) == without_per_request(http) and shape(udp) == shape(http)
