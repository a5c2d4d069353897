"""BEAST_SERVER=granian: the LPO served by granian keeps the behaviour and the guards it claims.

transports/granian_server.py says what granian keeps of the HTTP guards and what it lacks;
this checks both on the pinned granian over real connections: what the module relies on of
granian's internals, the size and time limits, the trusted-proxy rule, and the existing HTTP,
WebSocket and hostile-input tests re-run here against a granian-served LPO (imported below, so
they run with this module's `server` and `srv` fixtures). Not re-run: the 1009 close for an
oversized WebSocket frame, the 431/408 envelopes and the connection caps, which granian does not
give (the module's docstring, docs/configuration.md), and the UDP tests (no HTTP server in them).
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
import test_hostile
from support import InProcessServer, in_process_server, put_btc, stack_env, start_beast_serve, stop_beast
from test_hostile import (
    test_a_failure_inside_a_route_still_answers_an_envelope,  # noqa: F401
    test_hostile_websocket_frames,  # noqa: F401
)
from test_price_http import (
    test_a_price_written_to_the_cache_is_served,  # noqa: F401
    test_a_revoked_key_is_refused,  # noqa: F401
    test_a_subscriber_past_the_monthly_limit_gets_429,  # noqa: F401
    test_an_asset_without_a_price_goes_to_failed,  # noqa: F401
    test_api_key_in_the_query_works_too,  # noqa: F401
    test_bad_requests_answer_a_clear_error_and_change_nothing,  # noqa: F401
    test_health_needs_no_key,  # noqa: F401
    test_priority_order_and_staleness,  # noqa: F401
    test_several_assets_by_comma_and_repeated_parameter,  # noqa: F401
    test_usage_fields_and_rate_limit_headers,  # noqa: F401
)
from test_realtime import (
    flood,
    recv,
    seed_prices,
    small_window_socket,
    test_a_bad_or_missing_key_is_refused_with_1008,  # noqa: F401
    test_a_revoked_key_is_disconnected,  # noqa: F401
    test_a_slow_client_gets_the_latest_values_and_memory_stays_bounded,  # noqa: F401
    test_a_subscriber_past_its_limit_is_told_and_disconnected,  # noqa: F401
    test_bad_client_messages_get_an_error_and_the_connection_stays_open,  # noqa: F401
    test_each_pushed_update_is_metered_as_ws,  # noqa: F401
    test_subscribe_confirm_snapshot_live_updates_unsubscribe_ping,  # noqa: F401
    test_subscription_limit_counts_what_is_already_held,  # noqa: F401
    test_the_key_in_a_first_message_works,  # noqa: F401
    test_the_key_in_an_authorization_header_works,  # noqa: F401
)
from websockets.asyncio.client import connect

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.settings import Settings
from trinity_beast.transports import granian_server
from trinity_beast.transports.http.guards import MAX_BODY_BYTES, MAX_HEADER_BYTES
from trinity_beast.transports.server import bind_tcp, serve_granian

MODULE = "transports/granian_server.py"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


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


async def test_what_the_module_relies_on_is_there() -> None:
    from granian._granian import SocketHolder
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    assert len(granian_server.RELIED_ON) == 4  # each entry is checked below
    fields = set(inspect.signature(HTTP1Settings).parameters)
    require(
        {"header_read_timeout", "keep_alive", "max_buffer_size"} <= fields, "HTTP1Settings' fields", f"it has {fields}"
    )
    require(callable(getattr(Server, "_init_shared_socket", None)), "Server._init_shared_socket()", "it is gone")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        holder = SocketHolder(sock.fileno(), False, 16)
        require(
            holder.get_fd() == sock.fileno() and not holder.is_uds(),
            "SocketHolder(fd, uds, backlog)",
            f"get_fd() is {holder.get_fd()}",
        )
    settings = granian_server.http1_settings()
    assert settings.max_buffer_size >= MAX_HEADER_BYTES and settings.header_read_timeout > 0
    # The override is what starts serving: the worker gets (None, our holder) and serves our socket.
    sock = bind_tcp("127.0.0.1", 0, "test")
    server = granian_server.GranianServer(lambda *a: None, sock, "warning")
    server._init_shared_socket()
    try:
        require(
            server._ssp is None and isinstance(server._shd, SocketHolder),
            "Server._ssp / Server._shd, read when the worker is spawned",
            f"_ssp {server._ssp!r}, _shd {server._shd!r}",
        )
        served = server._shd.get_fd()
        assert served != sock.fileno() and socket.socket(fileno=socket.dup(served)).getsockname() == sock.getsockname()
    finally:
        sock.close()


# ---- servers ------------------------------------------------------------------------------------


def granian_env(request: pytest.FixtureRequest, stack: str, tmp_path: Path) -> dict[str, str]:
    return {**stack_env(request, stack, tmp_path), "BEAST_SERVER": "granian"}


@pytest.fixture(params=["embedded", "production"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(granian_env(request, request.param, tmp_path)) as srv:
        assert srv.server == "granian"
        yield srv


@pytest.fixture(params=["embedded", "production"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(granian_env(request, request.param, tmp_path)) as srv:
        yield seed_prices(srv)


async def body_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200 with its length; /early answers without reading it."""
    if scope["type"] != "http":
        return
    size, more = 0, scope["path"] != "/early"
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
async def served(app: Any, settings: Settings | None = None) -> AsyncIterator[int]:
    """`app` served as `beast serve` serves the LPO under BEAST_SERVER=granian; yields the port."""
    sock = bind_tcp("127.0.0.1", 0, "test")
    stop = asyncio.Event()
    task = asyncio.create_task(serve_granian(app, sock, "warning", settings, stop))
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        sock.close()


async def raw(port: int, data: bytes, trickle: bytes = b"", timeout: float = 30) -> tuple[bytes, float]:
    """Send `data` (then `trickle`, a byte every 0.2 s), read until the server closes: (answer, seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(data)

    async def drip() -> None:
        for byte in trickle:
            await asyncio.sleep(0.2)  # the slowloris client's pace, not a wait for an event
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
    assert tuple(msg) == FIELDS and msg["status_code"] == int(head.split(b" ", 2)[1]), answer[:200]
    assert b"connection: close" in head.lower()
    return msg["status_code"], msg


def port_of(srv: InProcessServer) -> int:
    return int(srv.url.rsplit(":", 1)[1])


async def price_ok(srv: InProcessServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(srv.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {srv.admin_key}"})
    assert r.status_code == 200 and r.headers["server"] == "granian"


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
async def test_oversized_headers_get_a_plain_431_and_a_close(srv: InProcessServer, request_bytes: bytes) -> None:
    answer, _ = await raw(port_of(srv), request_bytes)
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in head, answer[:200]
    await price_ok(srv)


@pytest.mark.parametrize("method", [b"GET", b"POST"])
async def test_a_declared_huge_body_gets_a_413_envelope_before_the_app_runs(
    srv: InProcessServer, method: bytes
) -> None:
    answer, _ = await raw(
        port_of(srv), method + b" /price?asset=BTC HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    )
    status, msg = envelope_of(answer)
    assert status == 413 and "over the" in msg["error"] and msg["status"].startswith("❌ [LPO]")
    await price_ok(srv)


async def test_a_streamed_body_over_the_limit_gets_a_413_and_the_app_never_answers() -> None:
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with served(body_app) as port:
        answer, _ = await raw(port, request + chunk * (MAX_BODY_BYTES // 65536 + 2) + b"0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1") == 1, answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["status_code"] == 413
        closing = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        answer, _ = await raw(port, closing + chunk + b"0\r\n\r\n")
        assert answer.endswith(b"\r\n\r\n65536")  # under the limit: the app reads it all


async def test_a_body_that_never_comes_gets_a_408_and_an_early_answer_closes() -> None:
    async with served(body_app, Settings(body_timeout_s=1.0)) as port:
        answer, seconds = await raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.8 <= seconds < 20, (answer[:60], seconds)
        assert "not received within 1 s" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        # Answered before its body came (a route that refuses on the headers): closed, not held.
        answer, seconds = await raw(port, b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n0") and seconds < 20


async def test_slow_and_idle_clients_are_closed_after_the_header_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(granian_server, "HEADER_TIMEOUT_S", 1.0)
    async with served(body_app) as port:
        slow, idle = await asyncio.gather(
            raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n", trickle=b"X" * 100),  # slowloris: a byte now and then
            raw(port, b""),  # connected, says nothing
        )
        for answer, seconds in (slow, idle):
            assert answer == b"" and 0.8 <= seconds < 15, (answer[:40], seconds)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n1"), 10)).startswith(b"HTTP/1.1 200")
        idle_from = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 30) == b""  # an idle keep-alive: closed too
        assert time.monotonic() - idle_from < 15
        writer.close()


@pytest.mark.parametrize("trusted", ["", "127.0.0.1/32"])
async def test_x_forwarded_for_counts_only_from_trusted_proxies(
    request: pytest.FixtureRequest, tmp_path: Path, trusted: str
) -> None:
    """The per-address WebSocket limit sees the peer, or behind a trusted proxy the right-most
    address it forwarded (uvicorn's rule, applied to granian's scope)."""
    env = granian_env(request, "embedded", tmp_path) | {"BEAST_FEEDS": "false", "BEAST_TRUSTED_PROXIES": trusted}
    with in_process_server(env) as srv:
        _, secret = srv.create_key("subscriber")
        url = srv.url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}"
        async with connect(url, additional_headers={"X-Forwarded-For": "10.9.0.1, 203.0.113.7"}) as ws:
            await ws.send('{"ping": true}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            assert set(srv.app.hub.limits.per_ip) == {"203.0.113.7" if trusted else "127.0.0.1"}


async def test_a_client_that_stops_reading_is_dropped_with_a_reason(srv: InProcessServer) -> None:
    """test_realtime's test with a longer deadline: granian takes megabytes of frames for a
    client that reads nothing before a send waits (2.8 MB of 1 KB frames in one measurement),
    where uvicorn's transport stops at 64 KiB, so the writer's slow-client clock starts later."""
    hub = srv.app.hub
    hub.writer.slow_client_s = 0.5
    hub.push_interval_s = 0.0  # every update pushed (not coalesced), to fill the socket
    sock = small_window_socket(srv)
    async with connect(ws_url(srv), sock=sock, max_queue=1) as ws:
        await ws.send(json.dumps({"subscribe": srv.rt.registry.assets[:40]}))
        await recv(ws)
        ws.transport.pause_reading()  # the client stops reading: the buffers fill, sends stall
        deadline = time.time() + 120
        while hub.writer.dropped_slow == 0 and time.time() < deadline:
            flood(srv, ("BTC", "ETH", "SOL"), 60)  # small bursts: each is sent in full, none coalesced
        assert hub.writer.dropped_slow == 1
        while hub.clients and time.time() < deadline:
            await asyncio.sleep(0.05)
        assert not hub.clients


def ws_url(srv: InProcessServer) -> str:
    return srv.url.replace("http://", "ws://") + f"/ws/prices?api_key={srv.admin_key}"


# test_hostile's corpus of invalid UTF-8 and bad numbers, sent to the granian-served LPO.
INVALID = next(m for m in test_hostile.test_invalid_utf8_and_bad_numbers_get_a_4xx_envelope.pytestmark)


@pytest.mark.parametrize("request_bytes", INVALID.args[1], ids=[f"hostile-{i}" for i in range(len(INVALID.args[1]))])
async def test_invalid_utf8_and_bad_numbers_get_a_4xx(srv: InProcessServer, request_bytes: bytes) -> None:
    request_bytes = request_bytes.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    answer, _ = await raw(port_of(srv), request_bytes.replace(b"{key}", srv.admin_key.encode()))
    head = answer.partition(b"\r\n\r\n")[0].lower()
    if answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")) and b"\r\ncontent-length: 0" in head:
        return  # refused by hyper itself (invalid request line; 5000 assets over 16 KiB), before any app code
    status, msg = envelope_of(answer)
    assert 400 <= status < 500, msg


# ---- beast serve ---------------------------------------------------------------------------------


def test_beast_serve_with_two_granian_workers_answers_and_stops_cleanly(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The real command line: BEAST_SERVER=granian, --workers 2 on one port (SO_REUSEPORT), SIGTERM."""
    env = {**granian_env(request, "production", tmp_path), "BEAST_LOG_LEVEL": "WARNING"}
    p = start_beast_serve(env, cwd=tmp_path, args=("--workers", "2"))
    try:
        put_btc(p.env, "65000.5")
        secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))
        deadline, seen = time.time() + 60, 0
        while seen < 20 and time.time() < deadline:  # a new connection each: the kernel spreads them
            r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
            seen = seen + 1 if r.status_code == 200 and r.headers.get("server") == "granian" else 0
        assert seen == 20
    finally:
        code, err = stop_beast(p)
    assert code == 0, err


def test_sigterm_closes_open_websockets_with_1012_under_granian(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """granian would drop open WebSockets without a close frame: the hub closes them first (1012)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    env = {**granian_env(request, "production", tmp_path), "BEAST_LOG_LEVEL": "WARNING"}
    p = start_beast_serve(env, cwd=tmp_path)
    put_btc(p.env, "65000.5")
    secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))

    async def one(ws: Any) -> int | None:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def scenario() -> list[int | None]:
        url = p.url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}"
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(connect(url)) for _ in range(10)]
            for ws in sockets:
                await ws.send('{"subscribe": ["BTC"]}')
                while json.loads(await asyncio.wait_for(ws.recv(), 60)).get("data", {}).get("type") != "price":
                    pass
            p.proc.terminate()
            return list(await asyncio.gather(*(one(ws) for ws in sockets)))

    try:
        codes = asyncio.run(scenario())
    finally:
        exit_code, err = stop_beast(p)
    assert codes == [1012] * 10, (codes, err)
    assert exit_code == 0 and "Traceback" not in err, err
