"""BEAST_SERVER=granian: the LPO served by granian keeps the behaviour and the guards it claims.

transports/granian_server.py says what granian keeps of the HTTP guards and what it lacks;
this checks both on the pinned granian over real connections: what the module relies on of
granian, the size and time limits, and the existing HTTP, WebSocket and hostile-input tests
re-run here against a granian-served LPO (imported below, so they run with this module's
fixtures). Not re-run: the 1009 close for an oversized WebSocket frame and the 431/408
envelopes, which granian does not give (the module's docstring and docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import socket
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import InProcessServer, in_process_server, put_btc, stack_env, start_beast_serve, stop_beast

# The existing behaviour, run again here against granian (their `server`/`srv` fixtures are this module's).
from test_hostile import (  # noqa: F401
    test_a_failure_inside_a_route_still_answers_an_envelope,
    test_datagrams_from_strangers_never_get_more_than_512_bytes,
    test_hostile_websocket_frames,
)
from test_price_http import (  # noqa: F401
    test_a_price_written_to_the_cache_is_served,
    test_a_revoked_key_is_refused,
    test_a_subscriber_past_the_monthly_limit_gets_429,
    test_an_asset_without_a_price_goes_to_failed,
    test_api_key_in_the_query_works_too,
    test_bad_requests_answer_a_clear_error_and_change_nothing,
    test_health_needs_no_key,
    test_priority_order_and_staleness,
    test_several_assets_by_comma_and_repeated_parameter,
    test_usage_fields_and_rate_limit_headers,
)
from test_realtime import (  # noqa: F401
    put,
    test_a_bad_or_missing_key_is_refused_with_1008,
    test_a_client_that_stops_reading_is_dropped_with_a_reason,
    test_a_revoked_key_is_disconnected,
    test_a_slow_client_gets_the_latest_values_and_memory_stays_bounded,
    test_a_subscriber_past_its_limit_is_told_and_disconnected,
    test_bad_client_messages_get_an_error_and_the_connection_stays_open,
    test_each_pushed_update_is_metered_as_ws,
    test_subscribe_confirm_snapshot_live_updates_unsubscribe_ping,
    test_subscription_limit_counts_what_is_already_held,
    test_the_key_in_an_authorization_header_works,
)
from trinity_beast.domain.envelope import FIELDS
from trinity_beast.transports import granian_server
from trinity_beast.transports.http.guards import MAX_BODY_BYTES, MAX_HEADER_BYTES
from trinity_beast.transports.server import bind_tcp

MODULE = "transports/granian_server.py"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned() -> str:
    for spec in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        found = re.fullmatch(r"granian==([\w.]+)", spec.split(";")[0].strip())
        if found:
            return found.group(1)
    raise AssertionError("pyproject.toml: no exact granian pin (granian==X) among the dependencies")


def require(condition: object, relied_on: str, found: str) -> None:
    if not condition:
        raise AssertionError(
            f"granian changed under {MODULE}: written for granian=={pinned()} (installed {version('granian')}), "
            f"it relies on {relied_on}, but now {found}. Adapt the module (or keep the pin) before upgrading."
        )


# ---- what the module relies on ---------------------------------------------------------------


def test_the_installed_granian_is_the_pinned_one() -> None:
    assert version("granian") == pinned()


def test_what_the_module_relies_on_is_there() -> None:
    from granian._granian import SocketHolder
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    fields = set(inspect.signature(HTTP1Settings).parameters)
    require({"header_read_timeout", "max_buffer_size", "keep_alive"} <= fields, "HTTP1Settings' fields", f"{fields}")
    require(callable(getattr(Server, "_init_shared_socket", None)), "Server._init_shared_socket()", "it is gone")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        holder = SocketHolder(sock.fileno(), False, 16)
        require(holder.get_fd() == sock.fileno() and not holder.is_uds(), "SocketHolder(fd, uds, backlog)",
                f"get_fd() {holder.get_fd()}")
    settings = granian_server.http1_settings()
    assert settings.max_buffer_size >= MAX_HEADER_BYTES and settings.header_read_timeout > 0


# ---- servers ------------------------------------------------------------------------------------


def _seeded(server: InProcessServer) -> InProcessServer:
    for asset, price in (("BTC", "64000"), ("ETH", "3000"), ("SOL", "150")):
        put(server, asset, price)
    deadline = time.time() + 10
    while len(server.rt.live.get("SOL")) == 0 and time.time() < deadline:
        time.sleep(0.02)
    return server


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(stack_env(request, "embedded", tmp_path), server="granian") as srv:
        yield srv


@pytest.fixture
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(stack_env(request, "embedded", tmp_path), server="granian") as srv:
        yield _seeded(srv)


async def body_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RuntimeError("client gone")  # what a real app does: its answer goes nowhere
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    sock = bind_tcp("127.0.0.1", 0, "test")
    stop = asyncio.Event()
    task = asyncio.create_task(granian_server.serve(app, sock, "warning", stop))
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        sock.close()


async def raw(port: int, data: bytes, trickle: bytes = b"", timeout: float = 30) -> tuple[bytes, float]:
    """Send `data` (then `trickle` a byte every 0.2 s), read until the server closes: (answer, seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(data)

    async def drip() -> None:
        for byte in trickle:
            await asyncio.sleep(0.2)
            writer.write(bytes([byte]))

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionResetError, asyncio.IncompleteReadError):
        answer = b""
    finally:
        dripping.cancel()
        writer.close()
    return answer, time.monotonic() - started


def envelope_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    msg = json.loads(body)
    assert tuple(msg) == FIELDS and msg["status_code"] == int(head.split(b" ", 2)[1])
    return msg["status_code"], msg


# ---- the guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /price?asset=BTC HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n",
        b"GET /price HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(3000)) + b"\r\n",
        b"GET /price?asset=" + b"A" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["huge-header", "many-headers", "huge-url"],
)
async def test_oversized_headers_get_431_and_a_close(request_bytes: bytes) -> None:
    async with served(body_app) as port:
        answer, _ = await raw(port, request_bytes)
        assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in answer.lower()
        assert (await raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"))[0] \
            .endswith(b"\r\n\r\n2")


@pytest.mark.parametrize("method", [b"GET", b"POST"])
async def test_a_declared_huge_body_gets_a_413_envelope_before_the_app_runs(srv: InProcessServer, method: bytes) -> None:
    port = int(srv.url.rsplit(":", 1)[1])
    answer, _ = await raw(port, method + b" /price?asset=BTC HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    status, msg = envelope_of(answer)
    assert status == 413 and "over" in msg["error"] and msg["region"] == "us-east-2"
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(srv.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {srv.admin_key}"})
    assert r.status_code == 200


async def test_a_streamed_body_over_the_limit_gets_a_413_and_the_app_never_answers() -> None:
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with served(body_app) as port:
        answer, _ = await raw(port, request + chunk * (MAX_BODY_BYTES // 65536 + 2) + b"0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1") == 1
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["status_code"] == 413
        answer, _ = await raw(port, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1) + chunk + b"0\r\n\r\n")
        assert answer.endswith(b"\r\n\r\n65536")  # under the limit: the app reads it all


async def test_slow_and_idle_clients_are_closed_after_the_header_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(granian_server, "HEADER_TIMEOUT_S", 1.0)
    async with served(body_app) as port:
        slow, idle = await asyncio.gather(
            raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n", trickle=b"X" * 100),  # slowloris: a byte now and then
            raw(port, b""),  # connected, says nothing
        )
        for answer, seconds in (slow, idle):
            assert answer == b"" and 0.8 <= seconds < 8, (answer[:40], seconds)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n1"), 10)).startswith(b"HTTP/1.1 200")
        idle_from = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 30) == b""  # idle keep-alive: closed too
        assert time.monotonic() - idle_from < 8
        writer.close()


# ---- beast serve ---------------------------------------------------------------------------------


def test_beast_serve_with_two_granian_workers_answers_and_stops_cleanly(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The real command line: BEAST_SERVER=granian, --workers 2 on one port (SO_REUSEPORT), SIGTERM."""
    env = {**stack_env(request, "production", tmp_path), "BEAST_SERVER": "granian", "BEAST_LOG_LEVEL": "WARNING"}
    p = start_beast_serve(env, cwd=tmp_path, args=("--workers", "2"))
    try:
        put_btc(p.env, "65000.5")
        secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))
        deadline, seen, last = time.time() + 60, 0, ""
        while seen < 20 and time.time() < deadline:  # a new connection each: the kernel spreads them
            r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
            ok = r.status_code == 200 and r.headers.get("server") == "granian"
            seen, last = (seen + 1, last) if ok else (0, f"{r.status_code} {r.headers} {r.text[:300]}")
        assert seen == 20, last
    finally:
        code, err = stop_beast(p)
    assert code == 0, err
