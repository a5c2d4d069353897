"""OKX v5 public `tickers` (USDT-quoted); keep-alive is the plain-text `ping` / `pong`."""

from __future__ import annotations

import re

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
    ms_to_s,
    rows,
    unexpected,
)

# ---- OKX v5: the facts we rely on ------------------------------------------------------------
WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
REST_URL = "https://www.okx.com"
# Public ticker: 20 requests per 2 s per IP
# (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-ticker); we allow 8/s.
REST_RATE = 8.0
TICKER_PATH = "/api/v5/market/ticker"  # ?instId=<symbol>
INSTRUMENTS_PATH = "/api/v5/public/instruments"
IDLE_CLOSE_S = 30.0  # a connection with no subscription or no traffic for 30 s is closed

_INST = re.compile(r"instId:([A-Za-z0-9\-]+)")


class OKX(Connector):
    name = "okx"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE
    keepalive_interval = 20.0  # below IDLE_CLOSE_S
    args_per_message = 100  # the total-size limit of one request is undocumented: stay small

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        n = self.args_per_message
        return [
            dumps({"op": "subscribe", "args": [{"channel": "tickers", "instId": s} for s in symbols[i : i + n]]})
            for i in range(0, len(symbols), n)
        ]

    def keepalive_message(self) -> str:
        return "ping"

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        if raw == "pong" or raw == b"pong":
            out.events.append(Event(HEARTBEAT, "pong"))
            return
        msg = decode_or_report(raw, out)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        event = msg.get("event")
        if event is None and as_dict(msg.get("arg")).get("channel") == "tickers":
            for d in rows(msg.get("data"), out, "tickers data"):
                d = as_dict(d)
                self.tick(
                    state,
                    out,
                    d.get("instId"),
                    d.get("last"),
                    d.get("bidPx"),
                    d.get("askPx"),
                    ms_to_s(d.get("ts")),
                    received_ts,
                )
            return
        if event in ("subscribe", "unsubscribe"):
            out.events.append(Event(ACK, str(as_dict(msg.get("arg")).get("instId", ""))))
            return
        if event == "error":
            text = f"{msg.get('msg', 'error')} (code {msg.get('code')})"
            symbol = None
            if str(msg.get("code")) == "60018" or "doesn't exist" in text:
                m = _INST.search(str(msg.get("msg", "")))
                symbol = m.group(1) if m else find_symbol(text, state.symbols)
            self.error_or_rejection(out, text, symbol)
            return
        if event == "notice":
            out.events.append(Event(INFO, f"{msg.get('msg', '')} (code {msg.get('code')})"))
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH, {"instId": rest_symbol})

    def _check(self, doc: dict[str, object]) -> None:
        if str(doc.get("code")) != "0":
            raise ExchangeError(self.name, f"{doc.get('msg') or 'error'} (code {doc.get('code')})")

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = as_dict(http_json(body, self.name))
        self._check(doc)
        found = as_list(doc.get("data"))
        if not found:
            raise ExchangeError(self.name, f"{asset}: empty ticker response")
        d = as_dict(found[0])
        return self.rest_tick(
            asset, quote, d.get("last"), d.get("bidPx"), d.get("askPx"), ms_to_s(d.get("ts")), received_ts
        )

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH, {"instType": "SPOT"})

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = as_dict(http_json(body, self.name))
        self._check(doc)
        return {
            d["instId"]
            for d in as_list(doc.get("data"))
            if isinstance(d, dict) and isinstance(d.get("instId"), str) and d.get("state", "live") == "live"
        }
