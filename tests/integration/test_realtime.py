"""The real-time paths over loopback: the WebSocket push feed and UDP price requests."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support import InProcessServer, in_process_server, stack_env, start_beast_serve, stop_beast
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.tick import Tick
from trinity_beast.transports.udp.lpo import SMALL_ANSWER_BYTES
from trinity_beast.transports.ws.client import MAX_PENDING
from trinity_beast.transports.ws.frames import MAX_SUBSCRIPTIONS


def ws_url(srv: InProcessServer, key: str | None = None) -> str:
    base = srv.url.replace("http://", "ws://") + "/ws/prices"
    return base if key is None else f"{base}?api_key={key}"


def flood(srv: InProcessServer, assets: tuple[str, ...], count: int, base: int = 1000) -> None:
    """`count` rising prices for each asset, written in one batch on the server's loop."""
    now = time.time()
    ticks = [
        Tick(a, "USD", Decimal(base + i), None, None, "coinbase", now, now + i * 1e-6)
        for i in range(count)
        for a in assets
    ]
    srv.call(srv.rt.cache.put_ticks(ticks), timeout=30)


def small_window_socket(srv: InProcessServer) -> socket.socket:
    """A client socket with a tiny receive window (set before connecting, or it has no effect)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
    return sock


def put(srv: InProcessServer, asset: str, price: str, exchange: str = "coinbase") -> None:
    now = time.time()
    srv.call(srv.rt.cache.put_tick(Tick(asset, "USD", Decimal(price), None, None, exchange, now, now)))


async def recv(ws: Any, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_price(ws: Any, timeout: float = 5.0) -> dict:
    while True:
        msg = await recv(ws, timeout)
        if msg.get("data") and msg["data"].get("type") == "price":
            return msg


def seed_prices(server: InProcessServer) -> InProcessServer:
    """BTC, ETH and SOL priced, and (within 10 s) in the server's live copy."""
    for asset, price in (("BTC", "64000"), ("ETH", "3000"), ("SOL", "150")):
        put(server, asset, price)
    deadline = time.time() + 10
    while len(server.rt.live.get("SOL")) == 0 and time.time() < deadline:
        time.sleep(0.02)
    return server


@pytest.fixture(params=["embedded", "production"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with in_process_server(stack_env(request, request.param, tmp_path)) as server:
        yield seed_prices(server)


async def test_subscribe_confirm_snapshot_live_updates_unsubscribe_ping(srv: InProcessServer) -> None:
    async with connect(ws_url(srv, srv.admin_key)) as ws:
        await ws.send(json.dumps({"subscribe": ["BTC", "eth"]}))
        confirm = await recv(ws)
        assert list(confirm) == list(FIELDS)
        assert confirm["status"] == "✅ [WS] [us-east-2] [BeastMain] [/ws/prices] [200]"
        assert confirm["data"] == {"type": "subscribed", "assets": ["BTC", "ETH"]}
        assert confirm["api_key_id"] == srv.admin_id

        snapshot = {m["data"]["asset"]: m["data"] for m in [await recv_price(ws), await recv_price(ws)]}
        assert snapshot["BTC"]["price"] == 64000.0 and snapshot["BTC"]["source"] == "coinbase-ws"
        assert snapshot["ETH"]["price"] == 3000.0

        put(srv, "BTC", "64100.5")
        update = await recv_price(ws)
        assert update["data"]["asset"] == "BTC" and update["data"]["price"] == 64100.5
        assert update["api_key_id"] == srv.admin_id and list(update) == list(FIELDS)

        put(srv, "SOL", "151")  # not subscribed: never sent
        await ws.send(json.dumps({"unsubscribe": ["BTC", "SOL"]}))
        after = await recv(ws)
        # Only what was subscribed is reported removed: SOL never was.
        assert after["data"] == {"type": "subscribed", "assets": ["ETH"], "unsubscribed": ["BTC"]}
        assert after["error"] == ""
        put(srv, "BTC", "64200")
        put(srv, "ETH", "3001")
        update = await recv_price(ws)
        assert update["data"]["asset"] == "ETH"  # BTC's update did not come first: it never comes
        await ws.send(json.dumps({"unsubscribe": ["BTC"]}))  # again: nothing left to remove
        assert (await recv(ws))["data"] == {"type": "subscribed", "assets": ["ETH"], "unsubscribed": []}

        await ws.send(json.dumps({"ping": True}))
        assert await recv(ws) == {"type": "pong"}
        # An unlimited key's updates went out as ready frames straight to the socket (uvicorn's fast
        # path; under granian through the client's writer).
        [client] = list(srv.app.hub.clients)
        assert client.metered_here and (client.direct is not None) == (srv.server == "uvicorn")


@pytest.mark.parametrize(
    "frame,error",
    [
        ('{"subscribe": ["NOPECOIN"]}', "unknown asset(s): NOPECOIN"),
        ("{not json", "malformed JSON"),
        ('["subscribe"]', 'expected a JSON object such as {"subscribe": ["BTC"]}'),
        ('{"dance": true}', "unknown action (dance): expected subscribe, unsubscribe or ping"),
        ('{"subscribe": "B$C"}', "malformed asset 'B$C': an asset is 1-15 letters or digits"),
        ('{"subscribe": [1, 2]}', 'subscribe: expected a list of assets, e.g. {"subscribe": ["BTC", "ETH"]}'),
        (
            json.dumps({"subscribe": [f"A{i}" for i in range(MAX_SUBSCRIPTIONS + 1)]}),
            f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection",
        ),
    ],
)
async def test_bad_client_messages_get_an_error_and_the_connection_stays_open(
    srv: InProcessServer, frame: str, error: str
) -> None:
    async with connect(ws_url(srv, srv.admin_key)) as ws:
        await ws.send(frame)
        reply = await recv(ws)
        assert reply["status"].startswith("❌ [WS]") and reply["status_code"] == 400
        assert reply["error"].startswith(error)
        await ws.send('{"subscribe": ["BTC"]}')
        assert (await recv(ws))["data"] == {"type": "subscribed", "assets": ["BTC"]}


async def test_subscription_limit_counts_what_is_already_held(srv: InProcessServer) -> None:
    names = srv.rt.registry.assets
    async with connect(ws_url(srv, srv.admin_key)) as ws:
        await ws.send(json.dumps({"subscribe": names[:MAX_SUBSCRIPTIONS]}))
        assert len((await recv(ws))["data"]["assets"]) == MAX_SUBSCRIPTIONS
        await ws.send(json.dumps({"subscribe": [names[MAX_SUBSCRIPTIONS]]}))
        while True:
            reply = await recv(ws)
            if reply["status_code"] != 200:
                break
        assert reply["error"] == f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection"
        assert len(reply["data"]["subscribed"]) == MAX_SUBSCRIPTIONS


@pytest.mark.parametrize("key,reason", [(None, "missing API key"), ("tbk_wrong_key_123456", "invalid API key")])
async def test_a_bad_or_missing_key_is_refused_with_1008(srv: InProcessServer, key: str | None, reason: str) -> None:
    async with connect(ws_url(srv, key)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason.startswith(reason)


async def test_the_key_in_an_authorization_header_works(srv: InProcessServer) -> None:
    async with connect(ws_url(srv), additional_headers={"Authorization": f"Bearer {srv.admin_key}"}) as ws:
        await ws.send('{"ping": 1}')
        assert await recv(ws) == {"type": "pong"}


async def test_an_oversized_frame_closes_with_1009(srv: InProcessServer) -> None:
    async with connect(ws_url(srv, srv.admin_key), max_size=None) as ws:
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009


async def test_a_revoked_key_is_disconnected(srv: InProcessServer) -> None:
    key_id, secret = srv.create_key("subscriber")
    srv.app.hub.revalidate_s = 0.2
    async with connect(ws_url(srv, secret)) as ws:
        await ws.send('{"subscribe": ["BTC"]}')
        await recv(ws)
        srv.rt.db.revoke_key(key_id, time.time())
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv(ws)
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "API key revoked"


async def test_a_slow_client_gets_the_latest_values_and_memory_stays_bounded(srv: InProcessServer) -> None:
    hub = srv.app.hub
    sock = small_window_socket(srv)
    async with connect(ws_url(srv, srv.admin_key), sock=sock, max_queue=1) as ws:
        await ws.send('{"subscribe": ["BTC", "ETH"]}')
        await recv(ws)
        flood(srv, ("BTC",), 3000, base=60000)  # far more than the client takes while reading nothing
        put(srv, "ETH", "3999")
        [client] = list(hub.clients)
        assert len(client.prices) <= MAX_PENDING + 2  # bounded: past the limit, the latest per asset
        seen: dict[str, float] = {}
        while seen.get("BTC") != 62999.0 or seen.get("ETH") != 3999.0:
            msg = await recv_price(ws)
            seen[msg["data"]["asset"]] = msg["data"]["price"]


async def test_a_client_that_stops_reading_is_dropped_with_a_reason(srv: InProcessServer) -> None:
    hub = srv.app.hub
    hub.writer.slow_client_s = 0.5
    hub.push_interval_s = 0.0  # every update pushed (not coalesced), to fill the socket
    sock = small_window_socket(srv)
    async with connect(ws_url(srv, srv.admin_key), sock=sock, max_queue=1) as ws:
        await ws.send(json.dumps({"subscribe": srv.rt.registry.assets[:40]}))
        await recv(ws)
        ws.transport.pause_reading()  # the client stops reading: the socket buffers fill, sends stall
        deadline = time.time() + 30
        while hub.writer.dropped_slow == 0 and time.time() < deadline:
            flood(srv, ("BTC", "ETH", "SOL"), 60)  # small bursts: each is sent in full, none coalesced
        assert hub.writer.dropped_slow == 1
        while hub.clients and time.time() < deadline:
            await asyncio.sleep(0.05)
        assert not hub.clients
        ws.transport.resume_reading()
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 30)  # generous: the buffered updates come first on a loaded machine


async def test_each_pushed_update_is_metered_as_ws(srv: InProcessServer) -> None:
    key_id, secret = srv.create_key("subscriber", monthly_limit=1000)
    async with connect(ws_url(srv, secret)) as ws:
        await ws.send('{"subscribe": ["SOL"]}')
        await recv(ws)
        await recv_price(ws)
        for p in ("152", "153", "154"):
            put(srv, "SOL", p)
            await recv_price(ws)
    srv.call(srv.rt.meter.flush())
    assert srv.rt.meter.quota(key_id, 1000).used == 4


async def test_a_subscriber_past_its_limit_is_told_and_disconnected(srv: InProcessServer) -> None:
    _, secret = srv.create_key("subscriber", monthly_limit=2)
    async with connect(ws_url(srv, secret)) as ws:
        await ws.send('{"subscribe": ["SOL"]}')
        await recv(ws)
        await recv_price(ws)
        put(srv, "SOL", "160")
        await recv_price(ws)
        put(srv, "SOL", "161")
        refusal = await recv(ws)
        assert refusal["status_code"] == 429 and refusal["error"].startswith("monthly limit of 2 prices reached")
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
    assert closed.value.rcvd.code == 1008
    async with connect(ws_url(srv, secret)) as ws:  # and it cannot come back this month: told why, as above
        refusal = await recv(ws)
        assert refusal["status_code"] == 429 and refusal["error"].startswith("monthly limit of 2 prices reached")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason.startswith("monthly limit of 2 prices reached")


def test_two_lpo_processes_over_one_redis_both_deliver_every_update(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {
        **stack_env(request, "production", tmp_path),
        "BEAST_FEEDS": "false",
        "BEAST_PREWARM": "false",
        "APP_REPORT_SERVER": "false",
        "BEAST_WS_MAX_PUSHES_PER_S": "1000000",  # none coalesced
    }
    first = start_beast_serve(env, cwd=tmp_path)
    secret = next(line.split()[1] for line in first.first_output.splitlines() if line.strip().startswith("key:"))
    second = start_beast_serve({k: v for k, v in env.items()}, cwd=tmp_path)
    prices = [str(70000 + i) for i in range(25)]

    async def scenario() -> list[list[float]]:
        from trinity_beast.stores.cache.redis import RedisCache

        cache = RedisCache(env["REDIS_URL"], namespace=env["BEAST_REDIS_NAMESPACE"])
        urls = [p.url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}" for p in (first, second)]
        sockets = [await connect(u) for u in urls]
        try:
            for ws in sockets:
                await ws.send('{"subscribe": ["BTC"]}')
                await recv(ws)
            for price in prices:
                now = time.time()
                await cache.put_tick(Tick("BTC", "USD", Decimal(price), None, None, "coinbase", now, now))
                await asyncio.sleep(0.01)
            got: list[list[float]] = []
            for ws in sockets:
                seen: list[float] = []
                while not seen or seen[-1] != float(prices[-1]):
                    seen.append((await recv_price(ws))["data"]["price"])
                got.append(seen)
            return got
        finally:
            for ws in sockets:
                await ws.close()
            await cache.close()

    try:
        for seen in asyncio.run(scenario()):
            assert seen == [float(p) for p in prices]
    finally:
        stop_beast(first)
        stop_beast(second)


# ---- UDP ---------------------------------------------------------------------------------


def udp_ask(srv: InProcessServer, payload: bytes, bufsize: int = 4096) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, ("127.0.0.1", srv.udp_port))
        data, _ = sock.recvfrom(bufsize)
    return json.loads(data) | {"_bytes": len(data)}


def test_the_documented_udp_client_works_unchanged(srv: InProcessServer) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    payload = json.dumps({"asset": "BTC", "api_key": srv.admin_key})
    sock.sendto(payload.encode(), ("127.0.0.1", srv.udp_port))
    data, _ = sock.recvfrom(4096)
    response = json.loads(data)
    sock.close()
    assert list(response) == list(FIELDS)
    assert response["status"] == "✅ [LPO] [us-east-2] [BeastMain] [/price] [200]"
    assert response["data"]["assets"][0]["asset"] == "BTC" and response["data"]["assets"][0]["price"] == 64000.0
    assert len(data) < 1400


@pytest.mark.parametrize("asset", ["BTC,ETH", ["BTC", "ETH"]])
def test_udp_several_assets(srv: InProcessServer, asset: Any) -> None:
    answer = udp_ask(srv, json.dumps({"asset": asset, "api_key": srv.admin_key}).encode())
    assert [a["asset"] for a in answer["data"]["assets"]] == ["BTC", "ETH"]
    assert answer["_bytes"] < 1400


def test_udp_usage_is_metered_as_udp(srv: InProcessServer) -> None:
    key_id, secret = srv.create_key("subscriber", monthly_limit=50)
    for _ in range(3):
        udp_ask(srv, json.dumps({"asset": "BTC", "api_key": secret}).encode())
    srv.call(srv.rt.meter.flush())
    assert srv.rt.meter.quota(key_id, 50).used == 3


@pytest.mark.parametrize(
    "payload,status,error",
    [
        (b"\xff\xfe not json", 400, "malformed JSON"),
        (b"[1, 2, 3]", 400, "expected a JSON object"),
        (b'"BTC"', 400, "expected a JSON object"),
        (json.dumps({"asset": "BTC", "api_key": "k", "evil": 1}).encode(), 400, "unknown field(s) evil"),
        (json.dumps({"asset": 5, "api_key": "k"}).encode(), 400, "asset must be a string"),
        (json.dumps({"asset": "BTC", "api_key": 12345}).encode(), 401, "api_key must be a string"),
        (json.dumps({"asset": "BTC"}).encode(), 401, 'missing API key: put "api_key": "KEY" in the datagram'),
        (
            json.dumps({"asset": "BTC", "api_key": ""}).encode(),
            401,
            'missing API key: put "api_key": "KEY" in the datagram',
        ),
        (json.dumps({"asset": "BTC", "api_key": "tbk_not_a_key_at_all"}).encode(), 401, "invalid API key"),
        (b"{" + b" " * 3000 + b"}", 413, "datagram of 3002 bytes is over the 2048-byte limit"),
        (b"", 400, "malformed JSON"),
        (json.dumps({"asset": "BTC", "api_key": "tbk_revoked_or_unknown_key_000"}).encode(), 401, "invalid API key"),
    ],
)
def test_bad_datagrams_get_a_small_error_and_the_server_keeps_serving(
    srv: InProcessServer, payload: bytes, status: int, error: str
) -> None:
    # Whitespace keeps each datagram's meaning and makes it large enough to carry its error
    # under the anti-amplification rule (short ones: test_udp_amplification.py).
    answer = udp_ask(srv, payload + b" " * max(0, 200 - len(payload)))
    assert answer["status_code"] == status and answer["status"].startswith("❌ [LPO]")
    assert answer["error"].startswith(error)
    assert "Authorization" not in answer["error"] and "?api_key" not in answer["error"]  # no HTTP advice on UDP
    assert answer["_bytes"] <= SMALL_ANSWER_BYTES  # no amplification for unauthenticated senders
    ok = udp_ask(srv, json.dumps({"asset": "BTC", "api_key": srv.admin_key}).encode())
    assert ok["status_code"] == 200


def test_an_answer_too_big_for_one_datagram_says_so(srv: InProcessServer) -> None:
    assets = srv.rt.registry.assets[:50]
    answer = udp_ask(srv, json.dumps({"asset": assets, "api_key": srv.admin_key}).encode())
    assert answer["status_code"] == 413
    assert "over the 4096-byte datagram limit: ask for fewer assets per datagram" in answer["error"]
    assert answer["_bytes"] <= 4096


def test_an_answer_too_big_for_one_datagram_costs_nothing(srv: InProcessServer) -> None:
    """The 413 is decided before metering: no unit reserved or billed for prices never sent."""
    assets = srv.rt.registry.assets[:30]
    for asset in assets:
        put(srv, asset, "1.5")
    deadline = time.time() + 30
    while not all(srv.rt.live.get(a) for a in assets) and time.time() < deadline:
        time.sleep(0.02)
    key_id, secret = srv.create_key(monthly_limit=len(assets) - 1)  # a partial grant would have been taken
    for key in (secret, srv.admin_key):
        before = srv.rt.meter.quota(key_id if key == secret else srv.admin_id, 0).used
        for _ in range(2):  # the prebuilt answer (second ask) as well as the full one
            answer = udp_ask(srv, json.dumps({"asset": assets, "api_key": key}).encode())
            assert answer["status_code"] == 413 and "datagram limit" in answer["error"], answer
        one = udp_ask(srv, json.dumps({"asset": "BTC", "api_key": key}).encode())
        assert one["status_code"] == 200 and one["data"]["monthly_usage"] == before + 1


async def test_the_key_in_a_first_message_works(srv: InProcessServer) -> None:
    """A browser cannot set headers: the Command Center sends {"auth": KEY} first, keeping the
    key out of the URL. A wrong key there is refused like any other."""
    async with connect(ws_url(srv)) as ws:
        await ws.send(json.dumps({"auth": srv.admin_key}))
        await ws.send('{"ping": 1}')
        assert await recv(ws) == {"type": "pong"}
    async with connect(ws_url(srv)) as ws:
        await ws.send(json.dumps({"auth": "tbk_wrong_key_123456"}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason.startswith("invalid API key")
    async with connect(ws_url(srv)) as ws:
        await ws.send('{"subscribe": ["BTC"]}')  # not an auth message: refused, nothing served
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason.startswith("missing API key")
