"""Crypto.com Exchange v1 `ticker.<instrument>`; every public/heartbeat must be answered."""

from __future__ import annotations

import itertools
import re
import time

from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges.base import (
    ACK,
    HEARTBEAT,
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

# ---- Crypto.com Exchange v1: the facts we rely on --------------------------------------------
WS_URL = "wss://stream.crypto.com/exchange/v1/market"
REST_URL = "https://api.crypto.com/exchange/v1"
# Public market data: 100 requests/s per IP
# (https://exchange-docs.crypto.com/exchange/v1/rest-ws/index.html#rate-limits); we allow 8.
REST_RATE = 8.0
TICKER_PATH = "/public/get-tickers"  # ?instrument_name=<symbol>
INSTRUMENTS_PATH = "/public/get-instruments"
HEARTBEAT_S = 30.0  # the server sends `public/heartbeat` every 30 s ...
HEARTBEAT_REPLY_S = 5.0  # ... and closes the connection if it is not answered within 5 s

_CHANNEL = re.compile(r"ticker\.([A-Za-z0-9_\-]+)")


class CryptoCom(Connector):
    name = "cryptocom"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE
    connect_delay = 1.0  # the docs ask for ~1 s between connect and the first request
    # Keep each subscribe request modest (the exchange's per-request cap is undocumented).
    channels_per_message = 50

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        n = self.channels_per_message
        return [
            dumps(
                {
                    "id": next(self._ids),
                    "method": "subscribe",
                    "params": {"channels": [f"ticker.{s}" for s in symbols[i : i + n]]},
                    "nonce": int(time.time() * 1000),
                }
            )
            for i in range(0, len(symbols), n)
        ]

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        msg = decode_or_report(raw, out)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        method = msg.get("method")
        if method == "public/heartbeat":
            out.replies.append(dumps({"id": msg.get("id"), "method": "public/respond-heartbeat"}))
            out.events.append(Event(HEARTBEAT))
            return
        code = msg.get("code", 0)
        if code not in (0, "0"):
            text = f"{msg.get('message') or 'error'} (code {code})"
            where = " ".join(str(msg.get(k, "")) for k in ("channel", "message"))
            m = _CHANNEL.search(where)
            symbol = m.group(1) if m else find_symbol(where, state.symbols)
            self.error_or_rejection(out, text, symbol)
            return
        result = msg.get("result")
        if method == "subscribe" and isinstance(result, dict):
            if result.get("channel") == "ticker":
                name = result.get("instrument_name")
                for d in rows(result.get("data"), out, "ticker data"):
                    d = as_dict(d)
                    self.tick(
                        state,
                        out,
                        d.get("i", name),
                        d.get("a"),
                        d.get("b"),
                        d.get("k"),
                        ms_to_s(d.get("t")),
                        received_ts,
                    )
                return
            return unexpected(msg, out)
        if method in ("subscribe", "unsubscribe"):
            out.events.append(Event(ACK, str(msg.get("channel", ""))))
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH, {"instrument_name": rest_symbol})

    def _check(self, doc: dict[str, object]) -> None:
        if doc.get("code", 0) not in (0, "0"):
            raise ExchangeError(self.name, f"{doc.get('message') or 'error'} (code {doc.get('code')})")

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = as_dict(http_json(body, self.name))
        self._check(doc)
        found = as_list(as_dict(doc.get("result")).get("data"))
        if not found:
            raise ExchangeError(self.name, f"{asset}: empty ticker response")
        d = as_dict(found[0])
        return self.rest_tick(asset, quote, d.get("a"), d.get("b"), d.get("k"), ms_to_s(d.get("t")), received_ts)

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH)

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = as_dict(http_json(body, self.name))
        self._check(doc)
        result = as_dict(doc.get("result"))
        names: set[str] = set()
        for d in as_list(result.get("data")):  # v1
            if (
                isinstance(d, dict)
                and d.get("inst_type") == "CCY_PAIR"
                and d.get("tradable", True)
                and isinstance(d.get("symbol"), str)
            ):
                names.add(d["symbol"])
        for d in as_list(result.get("instruments")):  # legacy v2 shape
            if isinstance(d, dict) and isinstance(d.get("instrument_name"), str):
                names.add(d["instrument_name"])
        return names
