"""OKX v5 as the simulator speaks it: WebSocket `tickers` with text ping/pong, REST ticker(s) and instruments."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, now_ms
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import okx as facts


def _row(inst: Instrument, last: str, bid: str, ask: str, open_: str) -> dict[str, Any]:
    """One `tickers` entry, the same on WebSocket and REST."""
    return {
        "instType": "SPOT",
        "instId": inst.symbol,
        "last": last,
        "lastSz": "0.0002",
        "askPx": ask,
        "askSz": "1.5",
        "bidPx": bid,
        "bidSz": "0.23",
        "open24h": open_,
        "high24h": ask,
        "low24h": bid,
        "volCcy24h": "525802090.6",
        "vol24h": "17602.1",
        "sodUtc0": open_,
        "sodUtc8": open_,
        "ts": str(now_ms()),
    }


class OKXSim(SimProtocol):
    name = "okx"
    subscribe_deadline_s = facts.IDLE_CLOSE_S

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        return _row(inst, last or q_last, bid, ask, q_last)

    def _push(self, inst: Instrument, data: dict[str, Any]) -> str:
        return dumps({"arg": {"channel": "tickers", "instId": inst.symbol}, "data": [data]})

    def on_text(self, s: SimSession, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        msg = loads_or_none(text)
        args = msg.get("args") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return [
                dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}", "connId": s.conn_id})
            ]
        out: list[str] = []
        pushes: list[str] = []
        rid = {"id": msg["id"]} if "id" in msg else {}
        for arg in args:
            arg = arg if isinstance(arg, dict) else {}
            sym = arg.get("instId")
            inst = s.lookup(sym) if arg.get("channel") == "tickers" else None
            if inst is None or not isinstance(sym, str):  # (lookup finds only str symbols)
                out.append(
                    dumps(
                        {
                            **rid,
                            "event": "error",
                            "code": "60018",
                            "msg": f"channel:{arg.get('channel')},instId:{sym} doesn't exist",
                            "connId": s.conn_id,
                        }
                    )
                )
                continue
            out.append(
                dumps({**rid, "event": msg["op"], "arg": {"channel": "tickers", "instId": sym}, "connId": s.conn_id})
            )
            if msg["op"] == "unsubscribe":
                s.subscribed.pop(sym, None)
            elif sym not in s.subscribed:
                s.subscribed[sym] = inst
                pushes.append(self._push(inst, self._data(s, inst)))
        return out + pushes

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._push(s.subscribed[sym], self._data(s, s.subscribed[sym])) for sym in symbols]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        inst = s.subscribed[symbol]
        return self._push(inst, self._data(s, inst, last=""))


# ---- REST -------------------------------------------------------------------------------------------


def _rest_row(sim: SimState, inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "okx")
    return _row(inst, last, bid, ask, last)


async def ticker(sim: SimState, request: Request) -> Response:
    inst = sim.rest_instrument("okx", request.query_params.get("instId", ""))
    if inst is None:
        return json_response({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
    sim.ticker_calls[("okx", inst.asset)] += 1
    return json_response({"code": "0", "msg": "", "data": [_rest_row(sim, inst)]})


async def tickers(sim: SimState, request: Request) -> Response:
    return json_response({"code": "0", "msg": "", "data": [_rest_row(sim, i) for i in sim.listed("okx")]})


async def instruments(sim: SimState, request: Request) -> Response:
    data = [
        {
            "instType": "SPOT",
            "instId": i.symbol,
            "baseCcy": i.asset,
            "quoteCcy": i.quote,
            "state": "live",
            "tickSz": "0.0001",
            "lotSz": "0.0001",
            "minSz": "0.0001",
            "listTime": "1606468572000",
        }
        for i in sim.listed("okx")
    ]
    return json_response({"code": "0", "msg": "", "data": data})


REST: list[RestRoute] = [
    (facts.TICKER_PATH, ticker),
    ("/api/v5/market/tickers", tickers),
    (facts.INSTRUMENTS_PATH, instruments),
]
