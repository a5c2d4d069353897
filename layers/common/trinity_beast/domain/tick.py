"""Tick: one price observation from one exchange, the unit that flows from feed to client."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Tick:
    """A price for `asset` from `exchange`.

    `price`, `bid` and `ask` are in `quote` as the exchange sent them. Once the price book
    converts a USDT/USDC price to USD it sets `usd_rate` (the rate applied) and the three
    prices are in USD; `quote` keeps the original currency so answers can say so.
    `exchange_ts` is the exchange's own time (receive time when the feed has none).
    """

    asset: str
    quote: str
    price: Decimal
    bid: Decimal | None
    ask: Decimal | None
    exchange: str
    exchange_ts: float
    received_ts: float
    source: str = "ws"  # "ws" (push feed) or "rest" (ticker call)
    usd_rate: Decimal | None = None

    @property
    def label(self) -> str:
        """How answers name the source: `coinbase-ws`, `okx-rest`."""
        return f"{self.exchange}-{self.source}"

    @property
    def in_usd(self) -> bool:
        return self.quote == "USD" or self.usd_rate is not None

    def to_usd(self, rate: Decimal) -> Tick:
        """This tick converted with `rate` USD per unit of its quote currency."""
        return replace(
            self,
            price=self.price * rate,
            bid=None if self.bid is None else self.bid * rate,
            ask=None if self.ask is None else self.ask * rate,
            usd_rate=rate,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "quote": self.quote,
            "price": str(self.price),
            "bid": None if self.bid is None else str(self.bid),
            "ask": None if self.ask is None else str(self.ask),
            "exchange": self.exchange,
            "exchange_ts": self.exchange_ts,
            "received_ts": self.received_ts,
            "source": self.source,
            "usd_rate": None if self.usd_rate is None else str(self.usd_rate),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tick:
        return cls(
            asset=d["asset"],
            quote=d["quote"],
            price=Decimal(d["price"]),
            bid=None if d.get("bid") is None else Decimal(d["bid"]),
            ask=None if d.get("ask") is None else Decimal(d["ask"]),
            exchange=d["exchange"],
            exchange_ts=float(d["exchange_ts"]),
            received_ts=float(d["received_ts"]),
            source=d.get("source", "ws"),
            usd_rate=None if d.get("usd_rate") is None else Decimal(d["usd_rate"]),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Tick:
        return cls.from_dict(orjson.loads(raw))
