"""One connector per exchange, keyed by the names in settings.EXCHANGES, and where each is reached.

Each exchange's module holds its facts (production URLs, REST rate, paths); settings hold only
overrides, so `ws_url` / `rest_url` are the one place an effective URL is decided.
"""

from __future__ import annotations

from trinity_beast.domain.settings import Settings
from trinity_beast.exchanges.base import (
    ACK,
    ERROR,
    HEARTBEAT,
    INFO,
    UNKNOWN,
    UNKNOWN_SYMBOL,
    Connector,
    ConnState,
    Event,
    ExchangeError,
    Parsed,
    RestRequest,
    UnknownInstrument,
)
from trinity_beast.exchanges.coinbase import Coinbase
from trinity_beast.exchanges.cryptocom import CryptoCom
from trinity_beast.exchanges.gateio import GateIO
from trinity_beast.exchanges.gemini import Gemini
from trinity_beast.exchanges.kraken import Kraken
from trinity_beast.exchanges.okx import OKX

CONNECTORS: dict[str, Connector] = {c.name: c for c in (Coinbase(), Kraken(), Gemini(), GateIO(), CryptoCom(), OKX())}


def connector_for(exchange: str) -> Connector:
    """The connector for `exchange`; UnknownInstrument for a name we do not know."""
    found = CONNECTORS.get(exchange)
    if found is None:
        raise UnknownInstrument(exchange, "unknown exchange")
    return found


def ws_url(settings: Settings, exchange: str) -> str:
    """Where `exchange`'s WebSocket feed is: its BEAST_<EX>_WS_URL override, else production."""
    return settings.ws_url_overrides.get(exchange) or connector_for(exchange).ws_url


def rest_url(settings: Settings, exchange: str) -> str:
    """The base of `exchange`'s REST API: its BEAST_<EX>_REST_URL override, else production."""
    return settings.rest_url_overrides.get(exchange) or connector_for(exchange).rest_url


__all__ = [
    "ACK",
    "CONNECTORS",
    "ERROR",
    "HEARTBEAT",
    "INFO",
    "UNKNOWN",
    "UNKNOWN_SYMBOL",
    "ConnState",
    "Connector",
    "Event",
    "ExchangeError",
    "Parsed",
    "RestRequest",
    "UnknownInstrument",
    "connector_for",
    "rest_url",
    "ws_url",
]
