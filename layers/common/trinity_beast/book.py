"""Choosing the price to serve from the latest tick of each exchange.

Pure functions over ticks: the feed manager fills the book, the servers read from it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .tick import Tick


def age(tick: Tick, now: float) -> float:
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
