"""One connector per exchange, keyed by the names in config.EXCHANGES."""

from __future__ import annotations

from .base import (
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
from .coinbase import Coinbase
from .cryptocom import CryptoCom
from .gateio import GateIO
from .gemini import Gemini
from .kraken import Kraken
from .okx import OKX

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
