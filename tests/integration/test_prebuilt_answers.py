"""Prebuilt /price answers (services/prices/splice.py) are the full path's answers, field for field.

Over a real server, HTTP and UDP: the spliced bytes parse to the same envelope as the full
path's (same fields in the same order and types, the same values but for the per-request
ones); a new tick takes the full path's rules again; every spliced answer is counted; a
limited key whose allowance covers only part of a prebuilt list gets the full path's partial
answer, and nothing past its limit.
"""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from typing import Any

from support import InProcessServer
from test_price_http import ISO_Z, assert_envelope, get_price, put, wait_served

# The fields that change from one answer to the next (docs/api.md); everything else must match.
PER_REQUEST = {
    "envelope": {"api_key_id", "timestamp"},
    "data": {"duration_ms", "duration_us", "monthly_usage", "monthly_limit", "usage_pct", "usage_warning"},
    "entry": {"cache_age_seconds", "latency_ms", "latency_us"},
}


def built(server: InProcessServer) -> int:
    return int(server.rt.prices._prebuilt.built)


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
    put(server, "ETH", "3000.25", quote="USDT", usd_rate=Decimal("1.0002"))  # converted: converted_from
    wait_served(server, "BTC", 64000.5)
    wait_served(server, "ETH", 3000.25)
    before = built(server)
    spliced = [get_price(server, "asset=BTC,ETH").json() for _ in range(3)]
    assert built(server) == before + 1  # one template, then only splices
    full = get_price(server, "asset=BTC,ETH&max_age_ms=60000").json()  # max_age_ms: always the full path
    assert built(server) == before + 1
    for body in spliced:
        assert_envelope(body, 200)
        assert shape(body) == shape(full)
        assert without_per_request(body) == without_per_request(full)
        assert body["api_key_id"] == server.admin_id and ISO_Z.match(body["timestamp"])
        assert [a["price"] for a in body["data"]["assets"]] == [64000.5, 3000.25]
        assert body["data"]["assets"][1]["converted_from"] == {"quote": "USDT", "usd_rate": 1.0002}
        for entry in body["data"]["assets"]:
            assert 0 <= entry["cache_age_seconds"] < 60
            assert entry["latency_ms"] >= 0 and entry["latency_us"] >= 0
    usage = [b["data"]["monthly_usage"] for b in spliced] + [full["data"]["monthly_usage"]]
    assert usage == [usage[0] + 2 * i for i in range(4)]  # every price of every answer counted, in order


def test_a_new_tick_is_served_at_once(server: InProcessServer) -> None:
    put(server, "SOL", "150")
    wait_served(server, "SOL", 150.0)
    get_price(server, "asset=SOL")
    before = built(server)
    assert get_price(server, "asset=SOL").json()["data"]["assets"][0]["price"] == 150.0
    assert built(server) == before  # the template served it
    put(server, "SOL", "151")
    assert wait_served(server, "SOL", 151.0)["data"]["assets"][0]["price"] == 151.0  # never the old bytes again
    assert built(server) > before
    for _ in range(5):
        assert get_price(server, "asset=SOL").json()["data"]["assets"][0]["price"] == 151.0


def test_a_limited_key_gets_what_its_allowance_covers_and_no_more(server: InProcessServer) -> None:
    put(server, "BTC", "64000.5")
    put(server, "ETH", "3000.25")
    wait_served(server, "BTC", 64000.5)
    wait_served(server, "ETH", 3000.25)
    _, secret = server.create_key(monthly_limit=3)
    first = get_price(server, "asset=BTC,ETH", key=secret)
    assert first.status_code == 200 and first.json()["data"]["monthly_usage"] == 2
    second = get_price(server, "asset=BTC,ETH", key=secret).json()  # one unit left for two prices
    assert second["status_code"] == 200 and second["data"]["monthly_usage"] == 3
    assert [a["asset"] for a in second["data"]["assets"]] == ["BTC"]
    assert [f["asset"] for f in second["data"]["failed"]] == ["ETH"]
    assert "monthly limit of 3 prices reached" in second["data"]["failed"][0]["reason"]
    third = get_price(server, "asset=BTC", key=secret)
    assert third.status_code == 429 and third.json()["data"]["monthly_usage"] == 3


def test_udp_gets_the_same_spliced_answer(server: InProcessServer) -> None:
    put(server, "BTC", "64000.5")
    wait_served(server, "BTC", 64000.5)
    get_price(server, "asset=BTC")  # the template exists
    before = built(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        s.sendto(json.dumps({"asset": "BTC", "api_key": server.admin_key}).encode(), ("127.0.0.1", server.udp_port))
        udp = json.loads(s.recvfrom(4096)[0])
    http = get_price(server, "asset=BTC").json()
    assert built(server) == before  # both protocols answer as the LPO: one template serves them
    assert without_per_request(udp) == without_per_request(http)
    assert shape(udp) == shape(http) and udp["api_key_id"] == server.admin_id
    assert udp["data"]["monthly_usage"] + 1 == http["data"]["monthly_usage"]  # UDP's answer was counted
