"""Gemini as the simulator speaks it: market data v2 `l2` (book changes + trades), REST pubticker and symbols."""

from __future__ import annotations

import random
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.prices import fmt
from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, now_ms
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import gemini as facts


class GeminiSim(SimProtocol):
    name = "gemini"
    heartbeat_s = facts.HEARTBEAT_S
    _LEVELS = 5
    _STEP = 0.0002

    def _levels(self, s: SimSession, inst: Instrument) -> tuple[str, dict[str, str], dict[str, str]]:
        last, _bid, _ask = s.quote(inst)
        p = float(last)
        bids = {fmt(p * (1 - k * self._STEP)): f"{k * 0.25:.2f}" for k in range(1, self._LEVELS + 1)}
        asks = {fmt(p * (1 + k * self._STEP)): f"{k * 0.3:.2f}" for k in range(1, self._LEVELS + 1)}
        return last, bids, asks

    def _trade(self, s: SimSession, inst: Instrument, price: str, ts: int) -> dict[str, Any]:
        eid = s.extra["event_id"] = s.extra.get("event_id", 45465309641) + 1
        return {
            "type": "trade",
            "symbol": inst.symbol,
            "event_id": eid,
            "timestamp": ts,
            "price": price,
            "quantity": "0.01",
            "side": random.choice(("buy", "sell")),
        }

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = loads_or_none(text)
        subs = msg.get("subscriptions") if isinstance(msg, dict) else None
        if (
            not isinstance(msg, dict)
            or msg.get("type") not in ("subscribe", "unsubscribe")
            or not isinstance(subs, list)
        ):
            return [dumps({"result": "error", "reason": "InvalidJson", "message": "Failed to parse subscription"})]
        out: list[str] = []
        books: dict[str, tuple[dict[str, str], dict[str, str]]] = s.extra.setdefault("books", {})
        for sub in subs:
            if not isinstance(sub, dict) or sub.get("name") != "l2":
                out.append(
                    dumps(
                        {
                            "result": "error",
                            "reason": "InvalidSubscription",
                            "message": f"Unsupported subscription {sub!r}",
                        }
                    )
                )
                continue
            for sym in sub.get("symbols") or []:
                inst = s.lookup(sym)
                if inst is None:
                    out.append(
                        dumps({"result": "error", "reason": "InvalidSymbol", "message": f"Invalid symbol: {sym}"})
                    )
                    continue
                if msg["type"] == "unsubscribe":
                    s.subscribed.pop(sym, None)
                    books.pop(sym, None)
                    continue
                if sym in s.subscribed:
                    continue
                s.subscribed[sym] = inst
                last, bids, asks = self._levels(s, inst)
                books[sym] = (bids, asks)
                ts = now_ms()
                # First message per symbol: the whole book plus recent trades, newest first.
                older = self._trade(s, inst, last, ts - 1000)
                trades = [self._trade(s, inst, last, ts), older]
                changes = [["buy", p, q] for p, q in bids.items()] + [["sell", p, q] for p, q in asks.items()]
                out.append(
                    dumps(
                        {
                            "type": "l2_updates",
                            "symbol": sym,
                            "changes": changes,
                            "trades": trades,
                            "auction_events": [],
                        }
                    )
                )
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        out: list[str] = []
        books = s.extra.setdefault("books", {})
        for sym in symbols:
            inst = s.subscribed[sym]
            last, bids, asks = self._levels(s, inst)
            old_bids, old_asks = books.get(sym, ({}, {}))
            changes = [["buy", p, "0"] for p in old_bids if p not in bids] + [
                ["sell", p, "0"] for p in old_asks if p not in asks
            ]
            changes += [["buy", p, q] for p, q in bids.items() if old_bids.get(p) != q]
            changes += [["sell", p, q] for p, q in asks.items() if old_asks.get(p) != q]
            books[sym] = (bids, asks)
            if changes:
                out.append(dumps({"type": "l2_updates", "symbol": sym, "changes": changes}))
            out.append(dumps(self._trade(s, inst, last, now_ms())))
        return out

    def heartbeat(self, s: SimSession) -> list[str]:
        return [dumps({"type": "heartbeat", "timestamp": now_ms()})]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        t = self._trade(s, s.subscribed[symbol], "NaN", now_ms())
        return dumps(t)


# ---- REST -------------------------------------------------------------------------------------------


def _bad_symbol(symbol: str) -> Response:
    return json_response(
        {"result": "error", "reason": "InvalidSymbol", "message": f"Supplied value '{symbol}' is not a valid symbol"},
        400,
    )


async def pubticker(sim: SimState, request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _bad_symbol(sym)
    sim.ticker_calls[("gemini", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gemini")
    return json_response(
        {
            "bid": bid,
            "ask": ask,
            "last": last,
            "volume": {inst.asset: "3.54", inst.quote: "226620.2", "timestamp": now_ms()},
        }
    )


async def v2_ticker(sim: SimState, request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _bad_symbol(sym)
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gemini")
    return json_response(
        {
            "symbol": inst.symbol,
            "open": last,
            "high": ask,
            "low": bid,
            "close": last,
            "changes": [last] * 24,
            "bid": bid,
            "ask": ask,
        }
    )


async def symbols(sim: SimState, request: Request) -> Response:
    return json_response([i.rest_symbol for i in sim.listed("gemini")])


async def details(sim: SimState, request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _bad_symbol(sym)
    return json_response(
        {
            "symbol": inst.symbol,
            "base_currency": inst.asset,
            "quote_currency": inst.quote,
            "tick_size": 1e-8,
            "quote_increment": 0.01,
            "min_order_size": "0.00001",
            "status": "open",
        }
    )


REST: list[RestRoute] = [
    (facts.TICKER_PATH, pubticker),
    ("/v2/ticker/{symbol}", v2_ticker),
    (facts.INSTRUMENTS_PATH, symbols),
    ("/v1/symbols/details/{symbol}", details),
]
