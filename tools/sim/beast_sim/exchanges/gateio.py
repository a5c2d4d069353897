"""Gate.io spot v4 as the simulator speaks it: WebSocket `spot.tickers` + `spot.ping`, REST tickers and pairs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, now_ms
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import gateio as facts


class GateSim(SimProtocol):
    name = "gateio"

    def _result(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        last = last or q_last
        return {
            "currency_pair": inst.symbol,
            "last": last,
            "lowest_ask": ask,
            "highest_bid": bid,
            "change_percentage": "0.5",
            "base_volume": "1138.9",
            "quote_volume": "72889600.1",
            "high_24h": ask,
            "low_24h": bid,
        }

    def _update(self, s: SimSession, result: dict[str, Any]) -> str:
        ms = now_ms()
        return dumps(
            {"time": ms // 1000, "time_ms": ms, "channel": "spot.tickers", "event": "update", "result": result}
        )

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = loads_or_none(text)
        ms = now_ms()
        base = {"time": ms // 1000, "time_ms": ms}
        if not isinstance(msg, dict):
            return [
                dumps(
                    {
                        **base,
                        "channel": "",
                        "event": "",
                        "error": {"code": 1, "message": "invalid request body"},
                        "result": None,
                    }
                )
            ]
        channel, event, rid = msg.get("channel"), msg.get("event"), msg.get("id")
        if channel == "spot.ping":
            return [dumps({**base, "channel": "spot.pong", "event": "", "error": None, "result": None})]
        if (
            channel != "spot.tickers"
            or event not in ("subscribe", "unsubscribe")
            or not isinstance(msg.get("payload"), list)
        ):
            return [
                dumps(
                    {
                        **base,
                        "id": rid,
                        "channel": channel,
                        "event": event,
                        "error": {"code": 2, "message": "invalid argument"},
                        "result": {"status": "fail"},
                    }
                )
            ]
        out: list[str] = []
        good: list[Instrument] = []
        for sym in msg["payload"]:
            inst = s.lookup(sym)
            if inst is None:
                out.append(
                    dumps(
                        {
                            **base,
                            "id": rid,
                            "channel": channel,
                            "event": event,
                            "error": {"code": 2, "message": f"unknown currency pair {sym}"},
                            "result": {"status": "fail"},
                        }
                    )
                )
            else:
                good.append(inst)
        if good:
            out.insert(
                0,
                dumps(
                    {
                        **base,
                        "id": rid,
                        "channel": channel,
                        "event": event,
                        "error": None,
                        "result": {"status": "success"},
                    }
                ),
            )
        for inst in good:
            if event == "unsubscribe":
                s.subscribed.pop(inst.symbol, None)
            elif inst.symbol not in s.subscribed:
                s.subscribed[inst.symbol] = inst
                out.append(self._update(s, self._result(s, inst)))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._update(s, self._result(s, s.subscribed[sym])) for sym in symbols]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        return self._update(s, self._result(s, s.subscribed[symbol], last="Infinity"))


# ---- REST (paths under the real base, /api/v4) ------------------------------------------------------


def _row(sim: SimState, inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gateio")
    return {
        "currency_pair": inst.symbol,
        "last": last,
        "lowest_ask": ask,
        "highest_bid": bid,
        "change_percentage": "0.28",
        "base_volume": "3331.1",
        "quote_volume": "55137098.0",
        "high_24h": ask,
        "low_24h": bid,
    }


async def tickers(sim: SimState, request: Request) -> Response:
    pair = request.query_params.get("currency_pair")
    if pair is None:
        return json_response([_row(sim, i) for i in sim.listed("gateio")])
    inst = sim.rest_instrument("gateio", pair)
    if inst is None:
        return json_response({"label": "INVALID_CURRENCY_PAIR", "message": f"Invalid currency pair {pair}"}, 400)
    sim.ticker_calls[("gateio", inst.asset)] += 1
    return json_response([_row(sim, inst)])


async def currency_pairs(sim: SimState, request: Request) -> Response:
    return json_response(
        [
            {
                "id": i.symbol,
                "base": i.asset,
                "quote": i.quote,
                "fee": "0.2",
                "min_quote_amount": "1",
                "amount_precision": 4,
                "precision": 6,
                "trade_status": "tradable",
            }
            for i in sim.listed("gateio")
        ]
    )


REST: list[RestRoute] = [(facts.TICKER_PATH, tickers), (facts.INSTRUMENTS_PATH, currency_pairs)]
