"""The price book: which price to serve, and turning USDT/USDC prices into USD.

Pure functions over ticks plus `PriceBook`, which takes raw ticks from the feeds, converts
them and hands them to the cache writer. Servers read through `pick` and `median`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from trinity_beast.domain.tick import Tick

STABLECOINS = ("USDT", "USDC")
# A source further than this from the median of all fresh sources is left out of the median.
OUTLIER_FRACTION = Decimal("0.02")


def age(tick: Tick, now: float) -> float:
    """Seconds since the tick was received from its exchange."""
    return max(0.0, now - tick.received_ts)


def is_fresh(tick: Tick, now: float, stale_after_s: float) -> bool:
    return age(tick, now) <= stale_after_s


def pick(
    ticks: Mapping[str, Tick], priority: Sequence[str], now: float, stale_after_s: float
) -> tuple[Tick | None, bool]:
    """(tick, fresh): the fresh USD tick of the first exchange in `priority`; else the freshest stale one."""
    usable = [t for t in ticks.values() if t.in_usd]
    if not usable:
        return None, False
    for exchange in priority:
        tick = ticks.get(exchange)
        if tick is not None and tick.in_usd and is_fresh(tick, now, stale_after_s):
            return tick, True
    return max(usable, key=lambda t: t.received_ts), False


@dataclass(frozen=True, slots=True)
class Source:
    tick: Tick
    age_s: float
    rejected: bool


@dataclass(frozen=True, slots=True)
class Median:
    """The median answer. Two shapes, told apart by `consensus`:

    - consensus: at least one fresh source lies within OUTLIER_FRACTION of the raw median
      of all fresh sources; `price` is the median of those, the others are `rejected`;
    - no consensus: every fresh source lies further than that from the raw median (e.g. two
      sources 10 % apart); `price` is the plain median of all fresh sources, none rejected.

    `dispersion` is (highest - lowest) / raw median over every fresh source, in both shapes,
    so a caller can judge how far the sources agree. `used` is never empty.
    """

    price: Decimal
    sources: list[Source]  # every fresh source, outliers marked
    consensus: bool = True
    dispersion: Decimal = Decimal(0)

    @property
    def used(self) -> list[Tick]:
        return [s.tick for s in self.sources if not s.rejected]

    @property
    def rejected(self) -> list[Tick]:
        return [s.tick for s in self.sources if s.rejected]


def median(ticks: Mapping[str, Tick], now: float, stale_after_s: float) -> Median | None:
    """The Median of all fresh USD sources (see `Median` for its two shapes); None without one."""
    fresh = sorted(
        (t for t in ticks.values() if t.in_usd and is_fresh(t, now, stale_after_s)), key=lambda t: t.exchange
    )
    if not fresh:
        return None
    prices = [t.price for t in fresh]
    center = statistics.median(prices)
    dispersion = (max(prices) - min(prices)) / center if center > 0 else Decimal(0)
    limit = center * OUTLIER_FRACTION
    sources = [Source(t, age(t, now), abs(t.price - center) > limit) for t in fresh]
    kept = [s.tick.price for s in sources if not s.rejected]
    if not kept:  # the sources disagree: no side can be called the outlier
        sources = [Source(s.tick, s.age_s, False) for s in sources]
        return Median(center, sources, consensus=False, dispersion=dispersion)
    return Median(statistics.median(kept), sources, consensus=True, dispersion=dispersion)


def usd_rate(
    quote: str, stable_ticks: Mapping[str, Tick], priority: Sequence[str], now: float, stale_after_s: float
) -> Decimal | None:
    """USD per unit of `quote`: 1 for USD, the fresh USD price of the stablecoin for USDT/USDC, else None."""
    if quote == "USD":
        return Decimal(1)
    if quote not in STABLECOINS:
        return None
    tick, fresh = pick({ex: t for ex, t in stable_ticks.items() if t.quote == "USD"}, priority, now, stale_after_s)
    return tick.price if tick is not None and fresh else None


def convert(tick: Tick, rate_for: Callable[[str], Decimal | None]) -> Tick | None:
    """`tick` in USD, or None while no live rate for its quote is known."""
    if tick.in_usd:
        return tick
    rate = rate_for(tick.quote)
    return None if rate is None else tick.to_usd(rate)


class PriceBook:
    """Latest raw tick per asset and exchange as the feeds deliver them.

    Keeps the stablecoins' own USD prices to convert USDT/USDC quotes, and passes every
    USD (or converted) tick to `publish`. A tick that cannot be converted yet (no live
    rate) is counted and dropped: the next one comes within seconds.
    """

    def __init__(
        self, publish: Callable[[Tick], None], priority: Sequence[str], stale_after_s: float, clock: Callable[[], float]
    ) -> None:
        self._publish = publish
        self._priority = priority
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._stable: dict[str, dict[str, Tick]] = {q: {} for q in STABLECOINS}
        self.awaiting_rate = 0

    def rate(self, quote: str) -> Decimal | None:
        return usd_rate(quote, self._stable.get(quote, {}), self._priority, self._clock(), self._stale_after_s)

    def ingest(self, tick: Tick) -> None:
        if tick.asset in self._stable and tick.quote == "USD":
            self._stable[tick.asset][tick.exchange] = tick
        converted = convert(tick, self.rate)
        if converted is None:
            self.awaiting_rate += 1
            return
        self._publish(converted)
