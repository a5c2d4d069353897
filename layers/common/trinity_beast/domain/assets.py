"""The asset registry: which assets we prewarm and what each exchange calls them.

One versioned file (data/assets.json) is the single source of truth for connectors, the
simulator and the `/ws/assets` listing, so a symbol can never be spelled two ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from trinity_beast.domain.settings import EXCHANGES

REGISTRY_VERSION = 1
EXPECTED_ASSETS = 150
QUOTES = ("USD", "USDT", "USDC")
DATA_FILE = Path(__file__).with_name("data") / "assets.json"


class RegistryError(ValueError):
    """The asset file is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One asset's spot market on one exchange.

    `symbol` is the WebSocket name, `rest_symbol` the REST name (they differ on Kraken:
    `BTC/USD` vs `XBTUSD`; Gemini REST wants lower case). Prices arrive in `quote`.
    """

    exchange: str
    asset: str
    symbol: str
    quote: str
    rest_symbol: str


@dataclass(frozen=True, slots=True)
class AssetInfo:
    code: str
    name: str
    instruments: Mapping[str, Instrument]  # exchange -> instrument, in EXCHANGES order


class AssetRegistry:
    """Read-only lookups over the validated asset file."""

    def __init__(self, version: int, infos: Iterable[AssetInfo]) -> None:
        self.version = version
        self._infos: dict[str, AssetInfo] = {}
        self._by_symbol: dict[tuple[str, str], Instrument] = {}
        for info in infos:
            self._infos[info.code] = info
            for inst in info.instruments.values():
                self._by_symbol[(inst.exchange, inst.symbol)] = inst
        self.assets: list[str] = list(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, asset: object) -> bool:
        return asset in self._infos

    def get(self, asset: str) -> AssetInfo | None:
        return self._infos.get(asset)

    def instrument(self, asset: str, exchange: str) -> Instrument | None:
        info = self._infos.get(asset)
        return None if info is None else info.instruments.get(exchange)

    def resolve(self, exchange: str, symbol: str) -> tuple[str, str] | None:
        """(asset, quote) for an exchange's WebSocket symbol, or None when not ours."""
        inst = self._by_symbol.get((exchange, symbol))
        return None if inst is None else (inst.asset, inst.quote)

    def exchanges_for(self, asset: str) -> list[str]:
        info = self._infos.get(asset)
        return [] if info is None else list(info.instruments)

    def instruments_for(self, exchange: str) -> list[Instrument]:
        return [i.instruments[exchange] for i in self._infos.values() if exchange in i.instruments]

    def listing(self) -> dict[str, Any]:
        """JSON-ready data for `GET /ws/assets`: each asset, its name, who quotes it."""
        return {
            "version": self.version,
            "count": len(self._infos),
            "assets": [
                {
                    "asset": info.code,
                    "name": info.name,
                    "exchanges": list(info.instruments),
                    "instruments": {
                        ex: {"symbol": inst.symbol, "quote": inst.quote} for ex, inst in info.instruments.items()
                    },
                }
                for info in self._infos.values()
            ],
        }


def parse_registry(doc: Any, expected: int | None = EXPECTED_ASSETS) -> AssetRegistry:
    """Validate a decoded asset file and build the registry; RegistryError on any flaw."""
    if not isinstance(doc, dict):
        raise RegistryError("asset file: expected a JSON object")
    if doc.get("version") != REGISTRY_VERSION:
        raise RegistryError(f"asset file: unsupported version {doc.get('version')!r}, expected {REGISTRY_VERSION}")
    entries = doc.get("assets")
    if not isinstance(entries, list):
        raise RegistryError("asset file: 'assets' must be a list")
    if expected is not None and len(entries) != expected:
        raise RegistryError(f"asset file: expected {expected} assets, found {len(entries)}")
    infos: list[AssetInfo] = []
    seen: set[str] = set()
    symbols: set[tuple[str, str]] = set()
    for n, entry in enumerate(entries):
        where = f"asset file: entry {n}"
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: expected an object")
        code, name, insts = entry.get("asset"), entry.get("name"), entry.get("instruments")
        if not isinstance(code, str) or not code or code != code.upper() or not code.isalnum():
            raise RegistryError(f"{where}: bad asset code {code!r}")
        where = f"asset file: {code}"
        if code in seen:
            raise RegistryError(f"{where}: duplicate asset code")
        seen.add(code)
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{where}: missing display name")
        if not isinstance(insts, dict) or not insts:
            raise RegistryError(f"{where}: needs at least one exchange instrument")
        unknown = [ex for ex in insts if ex not in EXCHANGES]
        if unknown:
            raise RegistryError(f"{where}: unknown exchange(s) {', '.join(map(str, unknown))}")
        built: dict[str, Instrument] = {}
        for ex in EXCHANGES:
            spec = insts.get(ex)
            if spec is None:
                continue
            if not isinstance(spec, dict):
                raise RegistryError(f"{where}/{ex}: expected an object")
            symbol, quote = spec.get("symbol"), spec.get("quote")
            rest_symbol = spec.get("rest_symbol", symbol)
            if not isinstance(symbol, str) or not symbol or not isinstance(rest_symbol, str) or not rest_symbol:
                raise RegistryError(f"{where}/{ex}: bad symbol")
            if quote not in QUOTES:
                raise RegistryError(f"{where}/{ex}: quote must be one of {', '.join(QUOTES)}, got {quote!r}")
            if (ex, symbol) in symbols:
                raise RegistryError(f"{where}/{ex}: symbol {symbol} used twice")
            symbols.add((ex, symbol))
            built[ex] = Instrument(ex, code, symbol, quote, rest_symbol)
        infos.append(AssetInfo(code, name.strip(), built))
    return AssetRegistry(REGISTRY_VERSION, infos)


def load_registry_file(path: str | Path, expected: int | None = EXPECTED_ASSETS) -> AssetRegistry:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"asset file {path}: {exc}") from None
    return parse_registry(doc, expected)


@lru_cache(maxsize=1)
def load_registry() -> AssetRegistry:
    """The packaged registry, read and validated once per process."""
    return load_registry_file(DATA_FILE)
