"""The simulator's protocol details, seen by a plain WebSocket/HTTP client."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from beast_sim import Simulator, serve
from trinity_beast.domain.assets import AssetRegistry


async def recv_json(ws, timeout: float = 3.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 3.0):
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if predicate(msg):
                return msg, raw


async def test_coinbase_acks_then_snapshot_then_updates(sim: Simulator) -> None:
    async with connect(sim.ws_urls["coinbase"]) as ws:
        await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "ticker"}))
        ack = await recv_json(ws)
        assert ack["channel"] == "subscriptions" and ack["events"][0]["subscriptions"]["ticker"] == [
            "BTC-USD",
            "ETH-USD",
        ]
        snap = await recv_json(ws)
        assert snap["channel"] == "ticker" and snap["events"][0]["type"] == "snapshot"
        assert {t["product_id"] for t in snap["events"][0]["tickers"]} == {"BTC-USD", "ETH-USD"}
        update, _ = await recv_until(ws, lambda m: m.get("channel") == "ticker")
        assert update["events"][0]["type"] == "update" and update["sequence_num"] > snap["sequence_num"]
        await ws.send(json.dumps({"type": "subscribe", "product_ids": ["FOO-USD"], "channel": "ticker"}))
        err, _ = await recv_until(ws, lambda m: m.get("type") == "error")
        assert err["reason"] == "FOO-USD is not a valid product"
        await ws.send(json.dumps({"type": "subscribe", "product_ids": [], "channel": "heartbeats"}))
        hb, _ = await recv_until(ws, lambda m: m.get("channel") == "heartbeats")
        assert isinstance(hb["events"][0]["heartbeat_counter"], str)


async def test_coinbase_closes_without_a_subscription(registry: AssetRegistry) -> None:
    async with Simulator(registry=registry, subscribe_deadline_s={"coinbase": 0.3}, push_interval_s=0.05) as sim:
        async with connect(sim.ws_urls["coinbase"]) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 3)
        assert sim.disconnects["coinbase"] == 1


async def test_kraken_status_snapshot_numbers_and_errors(sim: Simulator) -> None:
    async with connect(sim.ws_urls["kraken"]) as ws:
        status = await recv_json(ws)
        assert status["channel"] == "status" and status["data"][0]["system"] == "online"
        await ws.send(
            json.dumps(
                {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD", "XBT/USD"]}, "req_id": 9}
            )
        )
        ack, _ = await recv_until(ws, lambda m: m.get("method") == "subscribe" and m.get("success"))
        assert ack["result"]["symbol"] == "BTC/USD" and ack["req_id"] == 9
        snap, raw = await recv_until(ws, lambda m: m.get("channel") == "ticker")
        assert snap["type"] == "snapshot" and isinstance(snap["data"][0]["last"], float)
        assert '"last":"' not in raw  # numbers, not strings
        err, _ = await recv_until(ws, lambda m: m.get("success") is False)
        assert err["error"] == "Currency pair not supported XBT/USD"  # v2 wants BTC/USD
        await ws.send(json.dumps({"method": "ping", "req_id": 3}))
        pong, _ = await recv_until(ws, lambda m: m.get("method") == "pong")
        assert pong["req_id"] == 3
        await recv_until(ws, lambda m: m.get("channel") == "heartbeat")


async def test_gemini_first_message_is_the_full_book_with_trades(sim: Simulator) -> None:
    async with connect(sim.ws_urls["gemini"]) as ws:
        await ws.send(
            json.dumps({"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": ["BTCUSD", "NOPEUSD"]}]})
        )
        first, _ = await recv_until(ws, lambda m: m.get("type") == "l2_updates")
        sides = {c[0] for c in first["changes"]}
        assert sides == {"buy", "sell"} and first["trades"] and first["auction_events"] == []
        err, _ = await recv_until(ws, lambda m: m.get("result") == "error")
        assert err["reason"] == "InvalidSymbol" and "NOPEUSD" in err["message"]
        trade, _ = await recv_until(ws, lambda m: m.get("type") == "trade")
        assert trade["symbol"] == "BTCUSD" and isinstance(trade["timestamp"], int)
        await recv_until(ws, lambda m: m.get("type") == "heartbeat")


async def test_gateio_ping_pong_and_unknown_pair(sim: Simulator) -> None:
    async with connect(sim.ws_urls["gateio"]) as ws:
        await ws.send(
            json.dumps(
                {
                    "time": 1,
                    "id": 5,
                    "channel": "spot.tickers",
                    "event": "subscribe",
                    "payload": ["BTC_USDT", "FOO_USDT"],
                }
            )
        )
        ack, _ = await recv_until(ws, lambda m: m.get("event") == "subscribe" and m.get("error") is None)
        assert ack["result"] == {"status": "success"} and ack["id"] == 5
        err, _ = await recv_until(ws, lambda m: m.get("error"))
        assert err["error"]["message"] == "unknown currency pair FOO_USDT"
        await ws.send(json.dumps({"time": 1, "channel": "spot.ping"}))
        await recv_until(ws, lambda m: m.get("channel") == "spot.pong")


async def test_cryptocom_hangs_up_on_clients_that_ignore_heartbeats(sim: Simulator) -> None:
    async with connect(sim.ws_urls["cryptocom"]) as ws:
        await ws.send(
            json.dumps({"id": 1, "method": "subscribe", "params": {"channels": ["ticker.BTC_USD"]}, "nonce": 1})
        )
        hb, _ = await recv_until(ws, lambda m: m.get("method") == "public/heartbeat")
        assert hb["code"] == 0
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
    assert sim.heartbeat_disconnects["cryptocom"] == 1


async def test_cryptocom_keeps_clients_that_answer(sim: Simulator) -> None:
    async with connect(sim.ws_urls["cryptocom"]) as ws:
        await ws.send(
            json.dumps(
                {
                    "id": 1,
                    "method": "subscribe",
                    "params": {"channels": ["ticker.BTC_USD", "ticker.FOO_USD"]},
                    "nonce": 1,
                }
            )
        )
        err, _ = await recv_until(ws, lambda m: m.get("code") not in (0, None))
        assert err["channel"] == "ticker.FOO_USD"
        for _ in range(3):
            hb, _ = await recv_until(ws, lambda m: m.get("method") == "public/heartbeat")
            await ws.send(json.dumps({"id": hb["id"], "method": "public/respond-heartbeat"}))
        data, _ = await recv_until(ws, lambda m: isinstance(m.get("result"), dict))
        assert data["result"]["channel"] == "ticker"
    assert sim.heartbeat_disconnects["cryptocom"] == 0


async def test_okx_text_ping_and_error_codes(sim: Simulator) -> None:
    async with connect(sim.ws_urls["okx"]) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 3) == "pong"
        await ws.send(json.dumps({"id": "7", "op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USD"}]}))
        err = await recv_json(ws)
        assert (
            err["code"] == "60018" and err["msg"] == "channel:tickers,instId:BTC-USD doesn't exist" and err["id"] == "7"
        )
        await ws.send("{bad")
        err = await recv_json(ws)
        assert err["code"] == "60012"


async def test_down_refuses_the_handshake(sim: Simulator) -> None:
    sim.set_mode("kraken", "down")
    with pytest.raises(InvalidStatus):
        async with connect(sim.ws_urls["kraken"]):
            pass


async def test_http_control(sim: Simulator) -> None:
    base = f"http://{sim.host}:{sim.port}/_control"
    async with httpx.AsyncClient() as client:
        r = await client.post(base, json={"action": "set_mode", "exchange": "okx", "mode": "silent"})
        assert r.status_code == 200 and r.json()["state"]["modes"]["okx"] == "silent"
        assert sim.mode("okx") == "silent"
        await client.post(base, json={"action": "reject", "exchange": "kraken", "symbol": "ETH/USD"})
        await client.post(base, json={"action": "set_price", "asset": "BTC", "price": "70000.5"})
        state = (await client.get(base)).json()["state"]
        assert state["rejected"] == {"kraken": ["ETH/USD"]} and state["pinned"] == {"BTC": "70000.5"}
        r = await client.get(
            f"http://{sim.host}:{sim.port}/gateio/api/v4/spot/tickers", params={"currency_pair": "BTC_USDT"}
        )
        assert r.json()[0]["last"] == "70000.5"
        for bad in (
            {"action": "explode"},
            {"action": "set_mode", "exchange": "okx", "mode": "weird"},
            {"action": "set_mode", "exchange": "binance", "mode": "drop"},
            {"action": "set_price", "asset": "BTC", "price": "-3"},
        ):
            r = await client.post(base, json=bad)
            assert r.status_code == 400 and r.json()["ok"] is False
        assert (await client.post(base, content=b"{nope")).status_code == 400
        await client.post(base, json={"action": "reset"})
    assert sim.mode("okx") == "normal" and sim.instrument("kraken", "ETH/USD") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_runs_until_cancelled() -> None:
    port = _free_port()
    task = asyncio.create_task(serve("127.0.0.1", port))
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(f"http://127.0.0.1:{port}/_control")).status_code == 200
            except httpx.HTTPError:
                return False

        for _ in range(200):
            if await up():
                break
            await asyncio.sleep(0.02)
        assert await up()
        r = await client.get(f"http://127.0.0.1:{port}/okx/api/v5/market/ticker", params={"instId": "BTC-USDT"})
        assert r.json()["code"] == "0"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))
