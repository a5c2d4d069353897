"""Gemini market data v2 `l2`: no ticker channel, so price = newest trade, bid/ask = the book.

The book lives in the per-connection state and is rebuilt from the full-book first
`l2_updates` after every reconnect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges.base import (
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
    to_price,
    unexpected,
)

# ---- Gemini: the facts we rely on ------------------------------------------------------------
WS_URL = "wss://api.gemini.com/v2/marketdata"
REST_URL = "https://api.gemini.com"
# Public REST: 120 requests/min, at most 1/s recommended (https://docs.gemini.com/rate-limit);
# we allow ourselves 1.
REST_RATE = 1.0
TICKER_PATH = "/v1/pubticker/{symbol}"  # {symbol} = the REST symbol in lower case
INSTRUMENTS_PATH = "/v1/symbols"
HEARTBEAT_S = 5.0  # the server's `heartbeat` comes about every 5 s

_SYMBOL_IN_TEXT = re.compile(r"\b([A-Z0-9]{5,})\b")


@dataclass(slots=True)
class Book:
    """Top-of-book tracker for one symbol: price levels per side plus the last trade."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_price: Decimal | None = None
    last_trade: tuple[float, int] = (0.0, 0)  # (timestamp s, event_id) of last_price

    def apply(self, side: Any, price: Any, qty: Any) -> bool:
        """Apply one `[side, price, quantity]` change; False when malformed."""
        levels = self.bids if side == "buy" else self.asks if side == "sell" else None
        p = to_price(price)
        if levels is None or p is None or not isinstance(qty, str):
            return False
        try:
            q = Decimal(qty)
        except ArithmeticError:
            return False
        if not q.is_finite() or q < 0:
            return False
        if q == 0:
            levels.pop(p, None)
        else:
            levels[p] = q
        return True

    def trade(self, price: Decimal, ts: float, event_id: int) -> bool:
        """Record a trade if it is newer than the one we have."""
        key = (ts, event_id)
        if key < self.last_trade:
            return False
        self.last_trade, self.last_price = key, price
        return True

    @property
    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None


class Gemini(Connector):
    name = "gemini"
    ws_url = WS_URL
    rest_url = REST_URL
    rest_rate = REST_RATE

    def subscribe_messages(self, symbols: list[str]) -> list[str]:
        return [dumps({"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": symbols}]})]

    def new_state(self, symbols: Any) -> ConnState:
        state = super().new_state(symbols)
        state.extra["books"] = {}
        return state

    def _book(self, state: ConnState, symbol: str) -> Book:
        books: dict[str, Book] = state.extra.setdefault("books", {})
        book = books.get(symbol)
        if book is None:
            book = books[symbol] = Book()
        return book

    def _emit(
        self, state: ConnState, out: Parsed, symbol: str, book: Book, ts: float | None, received_ts: float
    ) -> None:
        if book.last_price is not None:
            self.tick(state, out, symbol, book.last_price, book.best_bid, book.best_ask, ts, received_ts)

    def _apply_trade(self, book: Book, t: dict[str, Any]) -> float | None:
        price = to_price(t.get("price"))
        ts = ms_to_s(t.get("timestamp"))
        eid = event_id if isinstance(event_id := t.get("event_id"), int) else 0
        if price is None or ts is None:
            return None
        return ts if book.trade(price, ts, eid) else None

    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None:
        msg = decode_or_report(raw, out)
        if msg is NOT_JSON:
            return
        if not isinstance(msg, dict):
            return unexpected(msg, out)
        kind = msg.get("type")
        symbol = msg.get("symbol")
        if kind == "l2_updates":
            if not isinstance(symbol, str) or symbol not in state.symbols:
                out.events.append(Event("unknown", f"book for unexpected symbol {symbol!r}"))
                return
            book = self._book(state, symbol)
            before = (book.last_price, book.best_bid, book.best_ask)
            changes = rows(msg.get("changes", []), out, f"{symbol} book changes")
            bad = sum(1 for c in changes if not (isinstance(c, list) and len(c) == 3 and book.apply(*c)))
            if bad:
                out.events.append(Event("error", f"{symbol}: {bad} malformed book change(s)", None))
            trade_ts = None
            for t in rows(msg.get("trades", []), out, f"{symbol} trades"):
                trade_ts = self._apply_trade(book, as_dict(t)) or trade_ts
            if (book.last_price, book.best_bid, book.best_ask) != before:
                self._emit(state, out, symbol, book, book.last_trade[0] if trade_ts else None, received_ts)
            return
        if kind == "trade":
            if not isinstance(symbol, str) or symbol not in state.symbols:
                out.events.append(Event("unknown", f"trade for unexpected symbol {symbol!r}"))
                return
            book = self._book(state, symbol)
            ts = self._apply_trade(book, msg)
            if ts is not None:
                self._emit(state, out, symbol, book, ts, received_ts)
            elif to_price(msg.get("price")) is None:
                out.events.append(Event("error", f"{symbol}: unusable trade {msg.get('price')!r}", None))
            return
        if kind == "heartbeat":
            out.events.append(Event(HEARTBEAT))
            return
        if kind in ("auction_open", "auction_indicative", "auction_result") or (
            isinstance(kind, str) and kind.startswith("candles_")
        ):
            out.events.append(Event(INFO, kind))
            return
        if kind is None or msg.get("result") == "error":
            # No `type` = an error (cryptofeed's rule); Gemini errors carry reason/message.
            text = " ".join(str(msg[k]) for k in ("reason", "message") if msg.get(k)) or "error"
            sym = msg.get("symbol") if isinstance(msg.get("symbol"), str) else find_symbol(text, state.symbols)
            if sym is None and msg.get("reason") == "InvalidSymbol":
                m = _SYMBOL_IN_TEXT.search(str(msg.get("message", "")))
                sym = m.group(1) if m else None
            self.error_or_rejection(out, text, sym)
            return
        unexpected(msg, out)

    def ticker_request(self, rest_symbol: str) -> RestRequest:
        return RestRequest(TICKER_PATH.format(symbol=rest_symbol.lower()))

    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        doc = as_dict(http_json(body, self.name))
        if doc.get("result") == "error":
            raise ExchangeError(self.name, f"{doc.get('reason')}: {doc.get('message')}")
        ts = ms_to_s(as_dict(doc.get("volume")).get("timestamp"))
        return self.rest_tick(asset, quote, doc.get("last"), doc.get("bid"), doc.get("ask"), ts, received_ts)

    def instruments_request(self) -> RestRequest:
        return RestRequest(INSTRUMENTS_PATH)

    def _parse_instruments(self, body: bytes | str) -> set[str]:
        doc = http_json(body, self.name)
        if isinstance(doc, dict) and doc.get("result") == "error":
            raise ExchangeError(self.name, f"{doc.get('reason')}: {doc.get('message')}")
        return {s.upper() for s in as_list(doc) if isinstance(s, str)}
