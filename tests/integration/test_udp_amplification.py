"""Issue 13, probe 2: a UDP sender without a valid key gets at most 3x the bytes it sent, or nothing.

A spoofed source address must not turn either UDP port into an amplifier (RFC 9000's
anti-amplification rule). Both servers run on real loopback sockets over real stores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import InProcessServer, in_process_server, stack_env, udp_exchange

from trinity_beast.domain.settings import load_settings
from trinity_beast.services.runtime import Runtime
from trinity_beast.transports.udp.lrs import UdpReportServer

# 0 and 1 bytes (the probe), a few short ones, then sizes around the smallest envelope.
SIZES = [0, 1, 2, 5, 20, 60, 100, 120, 150, 200, 400, 1000]


def payloads(size: int) -> list[bytes]:
    """Datagrams of exactly `size` bytes: junk, JSON padded with spaces, an unknown key."""
    out = [b"x" * size]
    for message in (
        b"{}",
        b'{"asset": "BTC"}',
        json.dumps({"asset": "BTC", "api_key": "tbk_unknown_key_0000000000"}).encode(),
    ):
        if len(message) <= size:
            out.append(message + b" " * (size - len(message)))
    return out


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    tmp = tmp_path_factory.mktemp("amp")
    env = {
        "BEAST_DATA_DIR": str(tmp / "data"),
        "BEAST_IP_ADDRESS": "127.0.0.1",
        "BEAST_FEEDS": "false",
        "BEAST_PREWARM": "false",
    }
    with in_process_server(env) as server:
        yield server


@pytest.mark.parametrize("size", SIZES)
def test_price_port_answers_strangers_at_most_three_times_their_bytes(srv: InProcessServer, size: int) -> None:
    for payload in payloads(size):
        data = udp_exchange(srv.udp_server, srv.udp_port, payload)
        if size <= 1:
            assert data is None, f"{size}-byte datagram got {len(data or b'')} bytes back"
        if data is not None:
            assert len(data) <= 3 * len(payload), (payload[:30], len(data))
            assert json.loads(data)["status_code"] in (400, 401, 413)
    if size >= 200:  # large enough to carry the short error: it is still sent
        answer = udp_exchange(srv.udp_server, srv.udp_port, b'{"asset": "BTC"}' + b" " * (size - 16))
        assert answer is not None and json.loads(answer)["error"].startswith("missing API key")
        assert "Authorization" not in json.loads(answer)["error"]  # UDP wording, not HTTP's


def test_a_trusted_sender_still_gets_answers_larger_than_its_datagram(srv: InProcessServer) -> None:
    payload = json.dumps({"asset": "BTC", "api_key": srv.admin_key}).encode()
    answer = udp_exchange(srv.udp_server, srv.udp_port, payload)
    assert answer is not None and len(answer) > 3 * len(payload)
    assert json.loads(answer)["status_code"] in (200, 404)  # a key-holder's answer, whatever the price


@pytest.mark.parametrize("stack", ["embedded", "production"])
async def test_report_port_answers_strangers_at_most_three_times_their_bytes(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    rt = Runtime.create(load_settings(stack_env(request, stack, tmp_path)))
    transport, server = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: UdpReportServer(rt), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        for size in SIZES:
            for payload in [b"x" * size, *([b'{"report": "usage"}' + b" " * (size - 19)] if size >= 19 else [])]:
                data = await asyncio.to_thread(udp_exchange, server, port, payload)
                if size <= 1:
                    assert data is None
                if data is not None:
                    assert len(data) <= 3 * len(payload), (size, len(data))
        big = b'{"report": "usage", "api_key": "tbk_unknown_key_0000000000"}' + b" " * 200
        data = await asyncio.to_thread(udp_exchange, server, port, big)
        assert data is not None and json.loads(data)["error"] == "invalid API key"
    finally:
        transport.close()
        await rt.stop()
