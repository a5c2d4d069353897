"""Coinbase Advanced Trade as the simulator speaks it: WebSocket `ticker` + `heartbeats`, REST market data."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beast_sim.protocol import RestRoute, SimProtocol, json_response
from beast_sim.state import SimSession, SimState
from beast_sim.wire import dumps, loads_or_none, now_ms, rfc3339_ns, rfc3339_us
from trinity_beast.domain.assets import Instrument
from trinity_beast.exchanges import coinbase as facts


class CoinbaseSim(SimProtocol):
    name = "coinbase"
    heartbeat_s = facts.HEARTBEAT_S
    subscribe_deadline_s = facts.SUBSCRIBE_WITHIN_S

    def _ticker(self, s: SimSession, inst: Instrument, price: str | None = None) -> dict[str, Any]:
        last, bid, ask = s.quote(inst)
        return {
            "type": "ticker",
            "product_id": inst.symbol,
            "price": price or last,
            "volume_24_h": "15000.5",
            "low_24_h": last,
            "high_24_h": last,
            "low_52_w": last,
            "high_52_w": last,
            "price_percent_chg_24_h": "0.5",
            "best_bid": bid,
            "best_bid_quantity": "0.5",
            "best_ask": ask,
            "best_ask_quantity": "0.2",
        }

    def _envelope(self, s: SimSession, channel: str, events: list[Any]) -> str:
        return dumps(
            {"channel": channel, "client_id": "", "timestamp": rfc3339_ns(), "sequence_num": s.seq(), "events": events}
        )

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = loads_or_none(text)
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            return [dumps({"type": "error", "message": "Failed to parse message"})]
        channel = msg.get("channel")
        products = msg.get("product_ids") or []
        if channel not in ("ticker", "heartbeats") or not isinstance(products, list):
            return [dumps({"type": "error", "message": f"Failed to subscribe: unsupported channel {channel!r}"})]
        out: list[str] = []
        if msg["type"] == "unsubscribe":
            if channel == "heartbeats":
                s.heartbeats = False
            for p in products:
                s.subscribed.pop(p, None)
        elif channel == "heartbeats":
            s.heartbeats = True
        else:
            new: list[Instrument] = []
            for p in products:
                inst = s.lookup(p)
                if inst is None:
                    out.append(
                        dumps(
                            {"type": "error", "message": "Failed to subscribe", "reason": f"{p} is not a valid product"}
                        )
                    )
                elif p not in s.subscribed:
                    s.subscribed[p] = inst
                    new.append(inst)
            if new:
                out.append(
                    self._envelope(s, "ticker", [{"type": "snapshot", "tickers": [self._ticker(s, i) for i in new]}])
                )
        subs = {"ticker": list(s.subscribed)}
        if s.heartbeats:
            subs["heartbeats"] = ["heartbeats"]
        out.insert(0, self._envelope(s, "subscriptions", [{"subscriptions": subs}]))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        tickers = [self._ticker(s, s.subscribed[sym]) for sym in symbols]
        return [self._envelope(s, "ticker", [{"type": "update", "tickers": tickers}])]

    def heartbeat(self, s: SimSession) -> list[str]:
        if not s.heartbeats:
            return []
        counter = s.extra["hb"] = s.extra.get("hb", 0) + 1
        now = datetime.now(UTC)
        current = f"{now:%Y-%m-%d %H:%M:%S.%f} +0000 UTC m=+{time.monotonic():.6f}"
        return [self._envelope(s, "heartbeats", [{"current_time": current, "heartbeat_counter": str(counter)}])]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        t = self._ticker(s, s.subscribed[symbol], price="-1")
        return self._envelope(s, "ticker", [{"type": "update", "tickers": [t]}])


# ---- REST (paths under the real base, /api/v3/brokerage) ----------------------------------------


def _product(sim: SimState, inst: Instrument) -> dict[str, Any]:
    last, _b, _a = sim.prices.quote(inst.asset, inst.quote, "coinbase")
    return {
        "product_id": inst.symbol,
        "price": last,
        "base_currency_id": inst.asset,
        "quote_currency_id": inst.quote,
        "product_type": "SPOT",
        "trading_disabled": False,
        "is_disabled": False,
        "status": "online",
    }


_NOT_FOUND = {"error": "NOT_FOUND", "error_details": "ProductID is invalid", "message": "ProductID is invalid"}


async def ticker(sim: SimState, request: Request) -> Response:
    inst = sim.rest_instrument("coinbase", request.path_params["symbol"])
    if inst is None:
        return json_response(_NOT_FOUND, 404)
    sim.ticker_calls[("coinbase", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "coinbase")
    trade = {
        "trade_id": str(now_ms()),
        "product_id": inst.symbol,
        "price": last,
        "size": "0.01",
        "time": rfc3339_us(),
        "side": "BUY",
        "bid": "",
        "ask": "",
    }
    return json_response({"trades": [trade], "best_bid": bid, "best_ask": ask})


async def product(sim: SimState, request: Request) -> Response:
    inst = sim.rest_instrument("coinbase", request.path_params["symbol"])
    return json_response(_product(sim, inst)) if inst else json_response(_NOT_FOUND, 404)


async def products(sim: SimState, request: Request) -> Response:
    found = [_product(sim, i) for i in sim.listed("coinbase")]
    return json_response({"products": found, "num_products": len(found)})


async def server_time(sim: SimState, request: Request) -> Response:
    now = time.time()
    return json_response({"iso": rfc3339_us(now), "epochSeconds": str(int(now)), "epochMillis": str(int(now * 1000))})


REST: list[RestRoute] = [
    (facts.TICKER_PATH, ticker),
    ("/market/products/{symbol}", product),
    (facts.INSTRUMENTS_PATH, products),
    ("/time", server_time),
]
