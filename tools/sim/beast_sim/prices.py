"""Moving prices for the simulator: one random walk per asset, in USD.

Exchanges quote in USD, USDT or USDC; a USDT price is the USD price divided by the
simulated USDT rate, so the book's USDT->USD conversion gets back to the same value.
`pin` fixes an asset's price exactly (tests compare it digit for digit).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable
from decimal import Decimal

# Rough USD levels so the numbers look like the real thing.
_START = {
    "BTC": 64000.0,
    "ETH": 3100.0,
    "USDT": 1.0,
    "XRP": 0.52,
    "BNB": 580.0,
    "SOL": 145.0,
    "USDC": 1.0,
    "DOGE": 0.12,
    "ADA": 0.45,
    "TRX": 0.12,
    "LINK": 14.0,
    "AVAX": 28.0,
    "XLM": 0.1,
    "SUI": 1.1,
    "HBAR": 0.07,
    "TON": 6.0,
    "SHIB": 0.000018,
    "DOT": 6.5,
    "LTC": 72.0,
    "BCH": 380.0,
    "UNI": 8.0,
    "PEPE": 0.0000095,
    "DAI": 1.0,
    "PYUSD": 1.0,
    "PAXG": 2350.0,
    "BONK": 0.000022,
    "FLOKI": 0.00015,
    "XMR": 160.0,
    "MKR": 2400.0,
    "AAVE": 95.0,
    "TAO": 320.0,
    "YFI": 6200.0,
    "OKB": 45.0,
    "GT": 8.0,
}
STABLE = {"USDT", "USDC", "DAI", "PYUSD"}
# Small fixed per-exchange deviations, so a median across exchanges means something.
_EXCHANGE_SKEW = {
    "coinbase": 0.0,
    "kraken": 0.0001,
    "gemini": -0.0001,
    "gateio": 0.0002,
    "cryptocom": -0.0002,
    "okx": 0.00015,
}


def fmt(value: float) -> str:
    """A plain decimal string (no exponent) with 8 significant digits."""
    if value <= 0 or not math.isfinite(value):
        value = 1e-8
    digits = max(0, 7 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


class PriceModel:
    def __init__(self, assets: Iterable[str], seed: int | None = None, volatility: float = 0.0004) -> None:
        self.rng = random.Random(seed)
        self.volatility = volatility
        self.usd: dict[str, float] = {}
        for code in assets:
            start = _START.get(code)
            if start is None:  # deterministic per code: log-uniform between 0.05 and 50 USD
                start = 0.05 * 1000 ** ((zlib.crc32(code.encode()) % 10_000) / 10_000)
            self.usd[code] = start
        self.pinned: dict[str, Decimal] = {}

    def step(self) -> None:
        """Advance every unpinned asset by one random-walk step."""
        gauss, vol = self.rng.gauss, self.volatility
        for code, p in self.usd.items():
            if code in STABLE:  # stays near 1, mean-reverting
                self.usd[code] = 1.0 + 0.9 * (p - 1.0) + gauss(0.0, 0.00005)
            else:
                self.usd[code] = p * math.exp(gauss(0.0, vol))

    def pin(self, asset: str, price: Decimal | None) -> None:
        if price is None:
            self.pinned.pop(asset, None)
        else:
            self.pinned[asset] = price
            self.usd[asset] = float(price)

    def quote(self, asset: str, quote: str, exchange: str) -> tuple[str, str, str]:
        """(last, bid, ask) as strings for `asset` in `quote` on `exchange`."""
        pinned = self.pinned.get(asset)
        if pinned is not None:
            p = float(pinned)
            half = p * 0.00005
            return format(pinned, "f"), fmt(p - half), fmt(p + half)
        usd = self.usd.get(asset, 1.0)
        rate = 1.0 if quote == "USD" else self.usd.get(quote, 1.0)
        p = usd / rate * (1.0 + _EXCHANGE_SKEW.get(exchange, 0.0))
        half = p * 0.00005
        return fmt(p), fmt(p - half), fmt(p + half)
