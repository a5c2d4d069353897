"""Kraken spot WS v2 `ticker` (numbers are JSON numbers: decoded exactly as Decimal)."""

from __future__ import annotations

import itertools
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
    iso_to_s,
    loads_exact,
    rows,
    unexpected,
)

# ---- Kraken spot: the facts we rely on -------------------------------------------------------
WS_URL = "wss://ws.kraken.com/v2"
REST_URL = "https://api.kraken.com"
# Public REST: about 1 call/s per IP stays within the limits
# (https://support.kraken.com/articles/206548367-what-are-the-api-rate-limits-); we allow 1.
REST_RATE = 1.0
TICKER_PATH = "/0/public/Ticker"  # ?pair=<REST symbol>
INSTRUMENTS_PATH = "/0/public/AssetPairs"
HEARTBEAT_S = 1.0  # `{"channel":"heartbeat"}` about once a second while subscribed
# WS v2 uses ISO codes; WS v1 (AssetPairs `wsname`) and REST use Kraken's own names for these.
LEGACY_NAMES = {"BTC": "XBT", "DOGE": "XDG"}
# REST result keys of the oldest pairs: X-prefixed asset + Z-prefixed fiat (XXBTZUSD). The
# connector takes the only key it gets; the simulator answers with these.
LEGACY_RESULT_ASSETS = {
    "BTC": "XXBT",
    "ETH": "XETH",
    "LTC": "XLTC",
    "XRP": "XXRP",
    "XLM": "XXLM",
    "ETC": "XETC",
    "XMR": "XXMR",
    "ZEC": "XZEC",
    "MLN": "XMLN",
    "REP": "XREP",
}

_NOT_SUPPORTED = re.compile(r"Currency pair not (?:supported|in ISO 4217-A3 format)\s+(\S+)")
_V1_TO_V2 = {legacy: iso for iso, legacy in LEGACY_NAMES.items()}


def v2_symbol(wsname: str) -> str:
    """`XBT/USD` (v1, AssetPairs wsname) -> `BTC/USD` (v2)."""
    base, _, quote = wsname.partition("/")
    return f"{_V1_TO_V2.get(base, base)}/{_V1_TO_V2.get(quote, quote)}"


class Kraken(Connector):
    name = "kraken"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE

    def __init__(self) -> None:
        self._req_ids = itertools.count(1)

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        return [
            dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "ticker", "symbol": symbols, "event_trigger": "trades", "snapshot": True},
                    "req_id": next(self._req_ids),
                }
            )
        ]

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        msg = decode_or_report(raw, out, loads_exact)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        channel = msg.get("channel")
        if channel == "ticker":
            for d in rows(msg.get("data"), out, "ticker data"):
                d = as_dict(d)
                ts = iso_to_s(d.get("timestamp"))
                self.tick(state, out, d.get("symbol"), d.get("last"), d.get("bid"), d.get("ask"), ts, received_ts)
            return
        if channel == "heartbeat":
            out.events.append(Event(HEARTBEAT))
            return
        if channel == "status":
            out.events.append(Event(INFO, "status"))
            return
        method = msg.get("method")
        if method in ("subscribe", "unsubscribe"):
            if msg.get("success") is True:
                out.events.append(Event(ACK, str(as_dict(msg.get("result")).get("symbol", ""))))
                return
            text = str(msg.get("error") or "subscribe failed")
            symbol = msg.get("symbol") if isinstance(msg.get("symbol"), str) else None
            if symbol is None:
                m = _NOT_SUPPORTED.search(text)
                symbol = m.group(1) if m else find_symbol(text, state.symbols)
            self.error_or_rejection(out, text, symbol)
            return
        if method == "pong":
            out.events.append(Event(HEARTBEAT, "pong"))
            return
        if "error" in msg:
            self.error_or_rejection(out, str(msg["error"]), None)
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH, {"pair": rest_symbol})

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = as_dict(http_json(body, self.name))
        errors = as_list(doc.get("error"))
        if errors:
            raise ExchangeError(self.name, "; ".join(map(str, errors)))
        result = as_dict(doc.get("result"))
        # The key is Kraken's own pair name (XBTUSD -> XXBTZUSD): take the only one.
        if len(result) != 1:
            raise ExchangeError(self.name, f"{asset}: expected one pair in result, got {len(result)}")
        t = as_dict(next(iter(result.values())))

        def first(k: str) -> object:
            values = as_list(t.get(k))
            return values[0] if values else None

        return self.rest_tick(asset, quote, first("c"), first("b"), first("a"), None, received_ts)

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH)

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = as_dict(http_json(body, self.name))
        errors = as_list(doc.get("error"))
        if errors:
            raise ExchangeError(self.name, "; ".join(map(str, errors)))
        return {
            v2_symbol(p["wsname"])
            for key, p in as_dict(doc.get("result")).items()
            if not key.endswith(".d")
            and isinstance(p, dict)
            and isinstance(p.get("wsname"), str)
            and p.get("status", "online") == "online"
        }
