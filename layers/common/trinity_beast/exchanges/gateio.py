"""Gate.io spot v4 `spot.tickers` (USDT-quoted), with the client `spot.ping` keep-alive."""

from __future__ import annotations

import itertools
import re
import time

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
    unexpected,
)

# ---- Gate.io spot v4: the facts we rely on ---------------------------------------------------
WS_URL = "wss://api.gateio.ws/ws/v4/"
REST_URL = "https://api.gateio.ws/api/v4"
# Public REST: 200 requests per 10 s per endpoint and IP
# (https://www.gate.io/docs/developers/apiv4/#frequency-limit-rule); we allow ourselves 8/s.
REST_RATE = 8.0
TICKER_PATH = "/spot/tickers"  # ?currency_pair=<symbol>
INSTRUMENTS_PATH = "/spot/currency_pairs"

_UNKNOWN_PAIR = re.compile(r"unknown currency pair\W*(\S+)?", re.IGNORECASE)


class GateIO(Connector):
    name = "gateio"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE
    keepalive_interval = 10.0

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        return [
            dumps(
                {
                    "time": int(time.time()),
                    "id": next(self._ids),
                    "channel": "spot.tickers",
                    "event": "subscribe",
                    "payload": symbols,
                }
            )
        ]

    def keepalive_message(self) -> str:
        return dumps({"time": int(time.time()), "channel": "spot.ping"})

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        msg = decode_or_report(raw, out)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        channel, event = msg.get("channel"), msg.get("event")
        error = msg.get("error")
        if error:
            err = as_dict(error)
            text = str(err.get("message") or error)
            m = _UNKNOWN_PAIR.search(text)
            symbol = None
            if m:
                # Gate puts the pair as the last word of the message.
                symbol = text.split()[-1].strip(".,:'\"") if text.split() else None
            symbol = symbol or find_symbol(text, state.symbols)
            code = err.get("code")
            self.error_or_rejection(out, f"{text} (code {code})" if code is not None else text, symbol)
            return
        if channel == "spot.tickers" and event == "update":
            ts = ms_to_s(msg.get("time_ms"))
            if ts is None and isinstance(msg.get("time"), (int, float)) and not isinstance(msg.get("time"), bool):
                ts = float(msg["time"]) or None
            results = msg.get("result")
            for r in results if isinstance(results, list) else [results]:
                r = as_dict(r)
                self.tick(
                    state,
                    out,
                    r.get("currency_pair"),
                    r.get("last"),
                    r.get("highest_bid"),
                    r.get("lowest_ask"),
                    ts,
                    received_ts,
                )
            return
        if event in ("subscribe", "unsubscribe"):
            out.events.append(Event(ACK, str(channel)))
            return
        if channel == "spot.pong":
            out.events.append(Event(HEARTBEAT, "pong"))
            return
        if msg.get("type") == "upgrade":
            out.events.append(Event(INFO, str(msg.get("msg", "upgrade"))))
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH, {"currency_pair": rest_symbol})

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = http_json(body, self.name)
        if isinstance(doc, dict):
            raise ExchangeError(self.name, f"{doc.get('label')}: {doc.get('message')}")
        found = as_list(doc)
        if not found:
            raise ExchangeError(self.name, f"{asset}: empty ticker response")
        r = as_dict(found[0])
        return self.rest_tick(asset, quote, r.get("last"), r.get("highest_bid"), r.get("lowest_ask"), None, received_ts)

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH)

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = http_json(body, self.name)
        if isinstance(doc, dict):
            raise ExchangeError(self.name, f"{doc.get('label')}: {doc.get('message')}")
        return {
            p["id"]
            for p in as_list(doc)
            if isinstance(p, dict) and isinstance(p.get("id"), str) and p.get("trade_status", "tradable") == "tradable"
        }
