"""The six simulated exchanges, one module each (mirroring trinity_beast/exchanges/), keyed by name.

Each module takes its exchange's facts (REST paths, heartbeat periods, Kraken's legacy names)
from the real connector's module, so the simulator and the connectors cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from beast_sim.exchanges import coinbase, cryptocom, gateio, gemini, kraken, okx
from beast_sim.protocol import RestRoute, SimProtocol
from trinity_beast.domain.assets import Instrument

PROTOCOLS: dict[str, SimProtocol] = {
    p.name: p
    for p in (
        coinbase.CoinbaseSim(),
        kraken.KrakenSim(),
        gemini.GeminiSim(),
        gateio.GateSim(),
        cryptocom.CryptoComSim(),
        okx.OKXSim(),
    )
}

# Each exchange's REST routes, relative to its real REST base path.
REST_ROUTES: dict[str, list[RestRoute]] = {
    "coinbase": coinbase.REST,
    "kraken": kraken.REST,
    "gemini": gemini.REST,
    "gateio": gateio.REST,
    "cryptocom": cryptocom.REST,
    "okx": okx.REST,
}

# Names an exchange's REST API also accepts for an instrument, beyond its symbols.
REST_ALIASES: dict[str, Callable[[Instrument], str]] = {"kraken": kraken.result_key}

__all__ = ["PROTOCOLS", "REST_ALIASES", "REST_ROUTES"]
