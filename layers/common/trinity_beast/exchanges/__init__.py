"""One connector per exchange, keyed by the names in config.EXCHANGES."""

from __future__ import annotations

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

CONNECTORS: dict[str, Connector] = {
    c.name: c for c in (Coinbase(), Kraken(), Gemini(), GateIO(), CryptoCom(), OKX())
}

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
]
