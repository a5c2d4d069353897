"""Coinbase Advanced Trade: `ticker` + `heartbeats` channels, one subscribe per channel."""

from __future__ import annotations

import re
from typing import Any

from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges.base import (
    ACK,
    HEARTBEAT,
    INFO,
    NOT_JSON,
    Connector,
    ConnState,
    Event,
    ExchangeError,
    Parsed,
    RestRequest,
    as_dict,
    as_list,
    decode_or_report,
    dumps,
    find_symbol,
    http_json,
    iso_to_s,
    rows,
    unexpected,
)

# ---- Coinbase Advanced Trade: the facts we rely on -------------------------------------------
WS_URL = "wss://advanced-trade-ws.coinbase.com"
REST_URL = "https://api.coinbase.com/api/v3/brokerage"
# Public REST: 10 requests/s per IP
# (https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits); we allow ourselves 8.
REST_RATE = 8.0
TICKER_PATH = "/market/products/{symbol}/ticker"  # under REST_URL; {symbol} = the REST symbol
INSTRUMENTS_PATH = "/market/products"
HEARTBEAT_S = 1.0  # the `heartbeats` channel sends one message a second
SUBSCRIBE_WITHIN_S = 5.0  # a connection that has not subscribed by then is closed

_NOT_VALID = re.compile(r"([A-Z0-9]+-[A-Z0-9]+) is not a valid product")


class Coinbase(Connector):
    name = "coinbase"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE
    # A subscribe of one invalid product can fail the whole request (Exchange feed).
    resubscribe_on_reject = True

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        return [
            dumps({"type": "subscribe", "product_ids": symbols, "channel": "ticker"}),
            dumps({"type": "subscribe", "product_ids": symbols, "channel": "heartbeats"}),
        ]

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        msg = decode_or_report(raw, out)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        channel = msg.get("channel")
        if channel in ("ticker", "ticker_batch"):
            ts = iso_to_s(msg.get("timestamp"))
            for event in rows(msg.get("events"), out, "ticker events"):
                for t in rows(as_dict(event).get("tickers"), out, "tickers"):
                    t = as_dict(t)
                    self.tick(
                        state,
                        out,
                        t.get("product_id"),
                        t.get("price"),
                        t.get("best_bid"),
                        t.get("best_ask"),
                        ts,
                        received_ts,
                    )
            return
        if channel == "heartbeats":
            out.events.append(Event(HEARTBEAT))
            return
        if channel == "subscriptions":
            out.events.append(Event(ACK, "subscriptions"))
            return
        if msg.get("type") == "error":
            text = " ".join(str(msg[k]) for k in ("message", "reason") if msg.get(k))
            m = _NOT_VALID.search(text)
            symbol = m.group(1) if m else find_symbol(text, state.symbols)
            self.error_or_rejection(out, text or "error", symbol)
            return
        if channel == "status":
            out.events.append(Event(INFO, "status"))
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH.format(symbol=rest_symbol), {"limit": "1"})

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = as_dict(http_json(body, self.name))
        if "error" in doc or ("message" in doc and "trades" not in doc):
            raise ExchangeError(self.name, str(doc.get("message") or doc.get("error")))
        trades = as_list(doc.get("trades"))
        if not trades:
            raise ExchangeError(self.name, f"{asset}: no recent trades in ticker response")
        newest: dict[str, Any] = as_dict(trades[0])
        return self.rest_tick(
            asset,
            quote,
            newest.get("price"),
            doc.get("best_bid"),
            doc.get("best_ask"),
            iso_to_s(newest.get("time")),
            received_ts,
        )

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH, {"product_type": "SPOT"})

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = as_dict(http_json(body, self.name))
        return {
            p["product_id"]
            for p in as_list(doc.get("products"))
            if isinstance(p, dict)
            and isinstance(p.get("product_id"), str)
            and p.get("product_type", "SPOT") == "SPOT"
            and not p.get("trading_disabled")
            and not p.get("is_disabled")
        }
