"""Crypto.com Exchange v1 as the simulator speaks it: WebSocket `ticker.<i>` with heartbeats that must be
answered, REST get-tickers and get-instruments."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, now_ms
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import cryptocom as facts


class CryptoComSim(SimProtocol):
    name = "cryptocom"
    heartbeat_s = facts.HEARTBEAT_S

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        return {
            "h": ask,
            "l": bid,
            "a": last or q_last,
            "c": "0.0050",
            "b": bid,
            "bs": "0.5000",
            "k": ask,
            "ks": "0.2000",
            "i": inst.symbol,
            "v": "879.5024",
            "vv": "56290000.12",
            "oi": "0",
            "t": now_ms(),
        }

    def _push(self, inst: Instrument, data: dict[str, Any], rid: int = -1) -> str:
        return dumps(
            {
                "id": rid,
                "method": "subscribe",
                "code": 0,
                "result": {
                    "instrument_name": inst.symbol,
                    "subscription": f"ticker.{inst.symbol}",
                    "channel": "ticker",
                    "data": [data],
                },
            }
        )

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = loads_or_none(text)
        if not isinstance(msg, dict):
            return [dumps({"id": -1, "code": 10004, "message": "BAD_REQUEST"})]
        method, rid = msg.get("method"), msg.get("id")
        if method == "public/respond-heartbeat":
            if s.pending_heartbeat is not None and rid == s.pending_heartbeat[0]:
                s.pending_heartbeat = None
            return []
        channels = (msg.get("params") or {}).get("channels") if isinstance(msg.get("params"), dict) else None
        if method not in ("subscribe", "unsubscribe") or not isinstance(channels, list):
            return [dumps({"id": rid, "method": method, "code": 10004, "message": "BAD_REQUEST"})]
        out: list[str] = []
        pushes: list[str] = []
        for ch in channels:
            sym = ch[len("ticker.") :] if isinstance(ch, str) and ch.startswith("ticker.") else None
            inst = s.lookup(sym)
            if inst is None:
                out.append(
                    dumps(
                        {"id": rid, "method": method, "code": 10004, "message": f"invalid channel {ch}", "channel": ch}
                    )
                )
                continue
            if method == "unsubscribe":
                s.subscribed.pop(inst.symbol, None)
            elif inst.symbol not in s.subscribed:
                s.subscribed[inst.symbol] = inst
                pushes.append(self._push(inst, self._data(s, inst), rid if isinstance(rid, int) else -1))
        out.append(dumps({"id": rid, "method": method, "code": 0}))
        return out + pushes

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._push(s.subscribed[sym], self._data(s, s.subscribed[sym])) for sym in symbols]

    def heartbeat(self, s: SimSession) -> list[str]:
        hid = now_ms()
        if s.pending_heartbeat is None:
            s.pending_heartbeat = (hid, time.monotonic() + s.sim.heartbeat_reply_s)
        return [dumps({"id": hid, "method": "public/heartbeat", "code": 0})]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        inst = s.subscribed[symbol]
        return self._push(inst, self._data(s, inst, last="abc"))


# ---- REST (paths under the real base, /exchange/v1) -------------------------------------------------


def _row(sim: SimState, inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "cryptocom")
    return {
        "h": ask,
        "l": bid,
        "a": last,
        "c": "0.0050",
        "b": bid,
        "k": ask,
        "i": inst.symbol,
        "v": "879.5024",
        "vv": "56290000.12",
        "oi": "0",
        "t": now_ms(),
    }


async def get_tickers(sim: SimState, request: Request) -> Response:
    name = request.query_params.get("instrument_name")
    if name is None:
        data = [_row(sim, i) for i in sim.listed("cryptocom")]
    else:
        inst = sim.rest_instrument("cryptocom", name)
        if inst is None:
            return json_response(
                {
                    "id": -1,
                    "method": "public/get-tickers",
                    "code": 10004,
                    "message": "BAD_REQUEST: invalid instrument_name",
                },
                400,
            )
        sim.ticker_calls[("cryptocom", inst.asset)] += 1
        data = [_row(sim, inst)]
    return json_response({"id": -1, "method": "public/get-tickers", "code": 0, "result": {"data": data}})


async def get_instruments(sim: SimState, request: Request) -> Response:
    data = [
        {
            "symbol": i.symbol,
            "inst_type": "CCY_PAIR",
            "display_name": f"{i.asset}/{i.quote}",
            "base_ccy": i.asset,
            "quote_ccy": i.quote,
            "tradable": True,
        }
        for i in sim.listed("cryptocom")
    ]
    return json_response({"id": -1, "method": "public/get-instruments", "code": 0, "result": {"data": data}})


REST: list[RestRoute] = [(facts.TICKER_PATH, get_tickers), (facts.INSTRUMENTS_PATH, get_instruments)]
