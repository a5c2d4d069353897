"""What every exchange connector declares, plus the parsing helpers they share.

A connector is data plus pure functions: how to subscribe, how to keep the connection
alive, and how to turn one raw frame into ticks, replies and events. The feed manager
owns all I/O, so connectors are trivially testable on recorded messages.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from trinity_beast.domain.tick import Tick

# Event kinds a parse can report besides ticks.
ACK = "ack"
HEARTBEAT = "heartbeat"
ERROR = "error"
UNKNOWN_SYMBOL = "unknown_symbol"
UNKNOWN = "unknown"
INFO = "info"


class ExchangeError(Exception):
    """An exchange answered with an error, or with something we cannot use."""

    def __init__(self, exchange: str, message: str) -> None:
        super().__init__(f"{exchange}: {message}")
        self.exchange = exchange
        self.message = message


class UnknownInstrument(ExchangeError):
    """The asset is not listed on this exchange (in our registry or at the exchange)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something other than a price happened: `kind` is one of the constants above."""

    kind: str
    text: str = ""
    symbol: str | None = None


@dataclass(slots=True)
class Parsed:
    """The outcome of parsing one frame."""

    ticks: list[Tick] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # frames to send back (heartbeat answers)
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class ConnState:
    """Per-connection state, created fresh for every (re)connection.

    `symbols` maps the exchange symbols this connection subscribed to (asset, quote);
    `extra` holds whatever a connector must remember between frames (Gemini's books).
    """

    symbols: dict[str, tuple[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A GET relative to the exchange's REST base URL."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)


class Connector(ABC):
    """Base for the six connectors. Subclasses set the class attributes and `_parse`."""

    name: str = ""
    # The production endpoints and the REST pace we allow ourselves, from the module's facts
    # (settings may override the URLs: exchanges.ws_url / rest_url).
    ws_url: str = ""
    rest_url: str = ""
    rest_rate: float = 0.0  # requests per second, below the exchange's published public limit
    # Most instruments one connection may carry; None = no limit.
    max_per_connection: int | None = None
    # Seconds between client keep-alive messages; None = the exchange needs none.
    keepalive_interval: float | None = None
    # Seconds to wait after connecting before subscribing (Crypto.com asks for ~1 s).
    connect_delay: float = 0.0
    # Resend the subscription for the remaining symbols after a symbol is rejected
    # (for exchanges where one bad symbol may fail the whole request).
    resubscribe_on_reject: bool = False

    # ---- WebSocket -------------------------------------------------------------
    @abstractmethod
    def subscribe_messages(self, symbols: list[str]) -> list[str]: ...

    def keepalive_message(self) -> str | None:
        return None

    def new_state(self, symbols: Mapping[str, tuple[str, str]]) -> ConnState:
        return ConnState(dict(symbols))

    def parse(self, raw: str | bytes, received_ts: float, state: ConnState) -> Parsed:
        """Parse one frame. Never raises: anything unusable becomes an event."""
        out = Parsed()
        try:
            self._parse(raw, received_ts, state, out)
        except Exception as exc:  # a malformed frame must never kill a feed
            out.events.append(Event(ERROR, f"malformed message ({type(exc).__name__}: {exc}): {preview(raw)}"))
        return out

    @abstractmethod
    def _parse(self, raw: str | bytes, received_ts: float, state: ConnState, out: Parsed) -> None: ...

    # ---- REST ------------------------------------------------------------------
    @abstractmethod
    def ticker_request(self, rest_symbol: str) -> RestRequest: ...

    def parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick:
        """Parse a REST ticker answer into a Tick; ExchangeError when unusable."""
        try:
            return self._parse_ticker(body, asset, quote, received_ts)
        except ExchangeError:
            raise
        except Exception as exc:
            raise ExchangeError(
                self.name, f"unusable ticker response ({type(exc).__name__}: {exc}): {preview(body)}"
            ) from exc

    @abstractmethod
    def _parse_ticker(self, body: bytes | str, asset: str, quote: str, received_ts: float) -> Tick: ...

    @abstractmethod
    def instruments_request(self) -> RestRequest: ...

    def parse_instruments(self, body: bytes | str) -> set[str]:
        """Tradable spot instruments, in the WebSocket spelling; ExchangeError when unusable."""
        try:
            return self._parse_instruments(body)
        except ExchangeError:
            raise
        except Exception as exc:
            raise ExchangeError(self.name, f"unusable instrument list ({type(exc).__name__}: {exc})") from exc

    @abstractmethod
    def _parse_instruments(self, body: bytes | str) -> set[str]: ...

    # ---- helpers for subclasses -------------------------------------------------
    def tick(
        self,
        state: ConnState,
        out: Parsed,
        symbol: Any,
        price: Any,
        bid: Any,
        ask: Any,
        exchange_ts: float | None,
        received_ts: float,
    ) -> None:
        """Append a tick for `symbol` if it is ours and the price is usable; else an event."""
        if not isinstance(symbol, str) or symbol not in state.symbols:
            out.events.append(Event(UNKNOWN, f"ticker for unexpected symbol {symbol!r}"))
            return
        p = to_price(price)
        if p is None:
            out.events.append(Event(ERROR, f"{symbol}: unusable price {price!r}", symbol))
            return
        asset, quote = state.symbols[symbol]
        out.ticks.append(self._tick(asset, quote, p, bid, ask, exchange_ts, received_ts, "ws"))

    def rest_tick(
        self, asset: str, quote: str, price: Any, bid: Any, ask: Any, exchange_ts: float | None, received_ts: float
    ) -> Tick:
        p = to_price(price)
        if p is None:
            raise ExchangeError(self.name, f"{asset}: unusable price {price!r}")
        return self._tick(asset, quote, p, bid, ask, exchange_ts, received_ts, "rest")

    def _tick(
        self,
        asset: str,
        quote: str,
        price: Decimal,
        bid: Any,
        ask: Any,
        exchange_ts: float | None,
        received_ts: float,
        source: str,
    ) -> Tick:
        return Tick(
            asset=asset,
            quote=quote,
            price=price,
            bid=to_price(bid),
            ask=to_price(ask),
            exchange=self.name,
            exchange_ts=believable_time(exchange_ts, received_ts),
            received_ts=received_ts,
            source=source,
        )

    def error_or_rejection(self, out: Parsed, text: str, symbol: str | None) -> None:
        """An error frame; when it names one of our symbols it is a rejection of that symbol."""
        if symbol:
            out.events.append(Event(UNKNOWN_SYMBOL, text, symbol))
        else:
            out.events.append(Event(ERROR, text))


# ---- decoding -----------------------------------------------------------------------

# A timestamp further ahead of our clock than this, or before EARLIEST_TS, comes from a broken
# clock or a garbage field: it is replaced by our receive time (which also keeps every shown
# date representable). Past times stay: a REST ticker's last trade may be days old.
# Staleness never depends on the exchange's time either way: it is measured from receipt.
MAX_AHEAD_S = 3600.0
EARLIEST_TS = 946684800.0  # 2000-01-01


def believable_time(exchange_ts: float | None, received_ts: float) -> float:
    """The exchange's timestamp when it is plausible, else when we received the message."""
    if exchange_ts is None or not EARLIEST_TS <= exchange_ts <= received_ts + MAX_AHEAD_S:
        return received_ts
    return exchange_ts


def loads(raw: str | bytes) -> Any:
    """orjson decode; ValueError on anything that is not JSON."""
    return orjson.loads(raw)


def loads_exact(raw: str | bytes) -> Any:
    """Decode with JSON numbers kept exact (Kraken v2 sends prices as numbers)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8")
    return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def to_price(value: Any) -> Decimal | None:
    """A finite positive Decimal from a string/number, else None. Floats go via str (exact text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None
            d = Decimal(repr(value))
        elif isinstance(value, str):
            s = value.strip()
            if not s or len(s) > 64:
                return None
            d = Decimal(s)
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d <= 0:
        return None
    return d


def ms_to_s(value: Any) -> float | None:
    """Epoch milliseconds (int, float or numeric string) to float seconds; None if unusable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or v <= 0:
        return None
    return v / 1000.0


_FRACTION = re.compile(r"\.(\d+)")


def iso_to_s(value: Any) -> float | None:
    """RFC 3339 time (any sub-second precision, Z or offset) to epoch seconds; None if unusable."""
    if not isinstance(value, str) or not value:
        return None
    s = value.strip().replace(" ", "T", 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python's fromisoformat takes at most 6 fractional digits; Coinbase sends nanoseconds.
    s = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), s, count=1)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def preview(raw: Any, limit: int = 160) -> str:
    """A short printable excerpt of a frame for logs and events."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        text = bytes(raw[: limit * 2]).decode("utf-8", "replace")
    else:
        text = str(raw)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def not_json(raw: str | bytes, out: Parsed) -> None:
    out.events.append(Event(ERROR, f"not JSON: {preview(raw)}"))


NOT_JSON: Any = object()  # what decode_or_report returns for a frame that is not JSON


def decode_or_report(raw: str | bytes, out: Parsed, decoder: Callable[[str | bytes], Any] = loads) -> Any:
    """The decoded frame, or NOT_JSON after reporting a frame that is not JSON."""
    try:
        return decoder(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        not_json(raw, out)
        return NOT_JSON


def unexpected(msg: Any, out: Parsed) -> None:
    out.events.append(Event(UNKNOWN, f"unrecognised message: {preview(orjson.dumps(msg, default=str))}"))


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def find_symbol(text: str, candidates: Mapping[str, Any] | set[str] | list[str]) -> str | None:
    """The longest candidate symbol that appears as a whole token in an error text."""
    best: str | None = None
    for sym in candidates:
        if sym and re.search(rf"(?<![A-Za-z0-9]){re.escape(sym)}(?![A-Za-z0-9])", text):
            if best is None or len(sym) > len(best):
                best = sym
    return best


def rows(value: Any, out: Parsed, what: str) -> list[Any]:
    """`value` when it is a list, else [] after reporting the malformed field."""
    if isinstance(value, list):
        return value
    out.events.append(Event(UNKNOWN, f"{what}: expected a list, got {type(value).__name__}"))
    return []


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def http_json(body: bytes | str, exchange: str) -> Any:
    try:
        return loads(body)
    except ValueError:
        raise ExchangeError(exchange, f"response is not JSON: {preview(body)}") from None
