"""UDP usage summaries on the LRS UDP port, over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import stack_env

from trinity_beast.domain.keys import new_key
from trinity_beast.domain.settings import load_settings
from trinity_beast.services.runtime import Runtime
from trinity_beast.transports.udp.datagram import SMALL_ANSWER_BYTES
from trinity_beast.transports.udp.lrs import UdpReportServer


class Lrs:
    def __init__(self, rt: Runtime, port: int) -> None:
        self.rt = rt
        self.port = port

    def key(self, tier: str = "subscriber") -> tuple[str, str]:
        key, secret = new_key("t", tier)
        self.rt.db.insert_key(key)
        return key.id, secret

    async def ask(self, payload: dict | bytes) -> dict[str, Any]:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

        def roundtrip() -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(raw, ("127.0.0.1", self.port))
                return sock.recvfrom(4096)[0]

        data = await asyncio.to_thread(roundtrip)
        return json.loads(data) | {"_bytes": len(data)}


@pytest.fixture(params=["embedded", "production"])
async def lrs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lrs]:
    rt = Runtime.create(load_settings(stack_env(request, request.param, tmp_path)))
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: UdpReportServer(rt), local_addr=("127.0.0.1", 0)
    )
    yield Lrs(rt, transport.get_extra_info("sockname")[1])
    transport.close()
    await rt.stop()


async def test_a_summary_splits_usage_by_protocol_status_and_asset(lrs: Lrs) -> None:
    _, admin = lrs.key("admin")
    alice, alice_secret = lrs.key()
    bob, _ = lrs.key()
    for protocol, asset, status, n in (("http", "BTC", 200, 3), ("udp", "ETH", 200, 2), ("ws", "BTC", 200, 1)):
        for _ in range(n):
            lrs.rt.meter.record(alice, "/price", asset, protocol, status, 0.002, True)
    lrs.rt.meter.record(bob, "/price", "SOL", "http", 404, 0.004, False)
    await lrs.rt.meter.flush()

    everyone = (await lrs.ask({"report": "usage", "api_key": admin, "endpoint": "/price"}))["data"]
    assert everyone["type"] == "usage_summary"
    assert everyone["requests"] == 7 and everyone["errors"] == 1 and everyone["keys"] == 2
    assert everyone["by_protocol"] == {"http": 4, "udp": 2, "ws": 1}
    assert everyone["by_status"] == {"200": 6, "404": 1}
    assert everyone["top_assets"][0] == {"asset": "BTC", "requests": 4}
    assert everyone["latency_max_ms"] == 4.0

    only_udp = (await lrs.ask({"report": "usage", "api_key": admin, "protocol": "udp", "endpoint": "/price"}))["data"]
    assert only_udp["requests"] == 2 and only_udp["by_protocol"] == {"udp": 2}

    own = await lrs.ask({"report": "usage", "api_key": alice_secret, "endpoint": "/price"})
    assert own["status"] == "✅ [LRS] [us-east-2] [BeastMain] [/reports/usage] [200]"
    assert own["data"]["requests"] == 6 and own["data"]["keys"] == 1 and own["data"]["api_key_id"] == alice

    other = await lrs.ask({"report": "usage", "api_key": alice_secret, "api_key_id": bob})
    assert other["status_code"] == 403 and other["error"].startswith("a subscriber key sees only its own usage")


@pytest.mark.parametrize(
    "payload,status,error",
    [
        (b"nope", 400, "malformed JSON"),
        ({"report": "prices", "api_key": "x"}, 400, 'report must be "usage"'),
        ({"report": "usage", "api_key": "x", "format": "csv"}, 400, "unknown field(s) format"),
        ({"report": "usage"}, 401, 'missing API key: put "api_key": "KEY" in the datagram'),
        ({"report": "usage", "api_key": "tbk_not_a_key_at_all"}, 401, "invalid API key"),
    ],
)
async def test_bad_requests_get_small_errors(lrs: Lrs, payload: Any, status: int, error: str) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    answer = await lrs.ask(raw + b" " * 200)  # large enough to carry its error (anti-amplification rule)
    assert answer["status_code"] == status and answer["status"].startswith("❌ [LRS]")
    assert answer["error"].startswith(error)
    assert answer["_bytes"] <= SMALL_ANSWER_BYTES


async def test_a_bad_filter_is_a_400_naming_it(lrs: Lrs) -> None:
    key_id, secret = lrs.key()
    answer = await lrs.ask({"report": "usage", "api_key": secret, "from": "yesterday-ish"})
    assert answer["status_code"] == 400 and "from" in answer["error"]
    assert answer["api_key_id"] == key_id
