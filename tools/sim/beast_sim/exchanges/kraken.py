"""Kraken spot as the simulator speaks it: WebSocket v2 `ticker` (JSON numbers), REST Ticker and AssetPairs."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, rfc3339_us
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import kraken as facts


def result_key(inst: Instrument) -> str:
    """The key Kraken's REST answers file a pair under: legacy X/Z names for the oldest pairs."""
    legacy = facts.LEGACY_RESULT_ASSETS.get(inst.asset)
    if legacy:
        return f"{legacy}ZUSD"
    if inst.asset == "USDT":
        return "USDTZUSD"
    return inst.rest_symbol


class KrakenSim(SimProtocol):
    name = "kraken"
    heartbeat_s = facts.HEARTBEAT_S

    def on_connect(self, s: SimSession) -> list[str]:
        return [
            dumps(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [
                        {
                            "version": "2.0.9",
                            "system": "online",
                            "api_version": "v2",
                            "connection_id": int(s.conn_id, 16),
                        }
                    ],
                }
            )
        ]

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> str:
        # Kraken v2 sends JSON numbers: write the decimal text as a bare number.
        q_last, bid, ask = s.quote(inst)
        last = last or q_last
        return (
            f'{{"symbol":{json.dumps(inst.symbol)},"bid":{bid},"bid_qty":0.5,"ask":{ask},"ask_qty":1.2,'
            f'"last":{last},"volume":2158.3,"vwap":{last},"low":{bid},"high":{ask},"change":0.0,"change_pct":0.0}}'
        )

    def _ticker(self, kind: str, parts: list[str]) -> str:
        return f'{{"channel":"ticker","type":"{kind}","data":[{",".join(parts)}]}}'

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = loads_or_none(text)
        if not isinstance(msg, dict):
            return [
                dumps(
                    {"error": "Malformed request", "success": False, "time_in": rfc3339_us(), "time_out": rfc3339_us()}
                )
            ]
        method, req_id = msg.get("method"), msg.get("req_id")
        stamp = {"time_in": rfc3339_us(), "time_out": rfc3339_us()}
        if method == "ping":
            return [dumps({"method": "pong", "req_id": req_id, **stamp})]
        params = given if isinstance(given := msg.get("params"), dict) else {}
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "ticker":
            return [
                dumps(
                    {
                        "error": "Method or channel not supported",
                        "method": method,
                        "success": False,
                        "req_id": req_id,
                        **stamp,
                    }
                )
            ]
        symbols = listed if isinstance(listed := params.get("symbol"), list) else []
        out: list[str] = []
        for sym in symbols:
            inst = s.lookup(sym)
            if inst is None:
                out.append(
                    dumps(
                        {
                            "method": method,
                            "success": False,
                            "error": f"Currency pair not supported {sym}",
                            "symbol": sym,
                            "req_id": req_id,
                            **stamp,
                        }
                    )
                )
                continue
            if method == "unsubscribe":
                s.subscribed.pop(sym, None)
            result = {"channel": "ticker", "event_trigger": "trades", "snapshot": True, "symbol": sym}
            out.append(dumps({"method": method, "req_id": req_id, "success": True, "result": result, **stamp}))
            if method == "subscribe" and sym not in s.subscribed:
                s.subscribed[sym] = inst
                out.append(self._ticker("snapshot", [self._data(s, inst)]))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._ticker("update", [self._data(s, s.subscribed[sym])]) for sym in symbols]

    def heartbeat(self, s: SimSession) -> list[str]:
        return [dumps({"channel": "heartbeat"})] if s.subscribed else []

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        return self._ticker("update", [self._data(s, s.subscribed[symbol], last="0")])


# ---- REST -------------------------------------------------------------------------------------------


async def ticker(sim: SimState, request: Request) -> Response:
    pair = request.query_params.get("pair", "")
    inst = sim.rest_instrument("kraken", pair)
    if inst is None:
        return json_response({"error": ["EQuery:Unknown asset pair"]})
    sim.ticker_calls[("kraken", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "kraken")
    body = {
        "a": [ask, "1", "1.000"],
        "b": [bid, "2", "2.000"],
        "c": [last, "0.001"],
        "v": ["702.2", "3307.3"],
        "p": [last, last],
        "t": [33153, 135029],
        "l": [bid, bid],
        "h": [ask, ask],
        "o": last,
    }
    return json_response({"error": [], "result": {result_key(inst): body}})


async def asset_pairs(sim: SimState, request: Request) -> Response:
    result = {}
    for inst in sim.listed("kraken"):
        base = facts.LEGACY_NAMES.get(inst.asset, inst.asset)
        result[result_key(inst)] = {
            "altname": inst.rest_symbol,
            "wsname": f"{base}/{inst.quote}",
            "base": facts.LEGACY_RESULT_ASSETS.get(inst.asset, base),
            "quote": "ZUSD" if inst.quote == "USD" else inst.quote,
            "status": "online",
        }
    return json_response({"error": [], "result": result})


REST: list[RestRoute] = [(facts.TICKER_PATH, ticker), (facts.INSTRUMENTS_PATH, asset_pairs)]
