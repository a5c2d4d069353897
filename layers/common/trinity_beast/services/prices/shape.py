"""The shape of a `/price` answer's data: one asset's entry and the answer's own fields.

The full path (answer.py) and the prebuilt answers (splice.py) both build answers with these
functions; the `*_timing` functions name the fields that change from one request to the next,
so splice.py knows what to splice without a list of its own.
"""

from __future__ import annotations

from typing import Any

from trinity_beast.domain.book import Median, age
from trinity_beast.domain.envelope import unix_ms, unix_seconds, utc_iso
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import Quota, usage_fields


def entry_timing(tick: Tick, now: float, latency_s: float) -> dict[str, Any]:
    """The fields of an asset's entry that change with every answer."""
    return {
        "cache_age_seconds": round(age(tick, now), 3),
        "latency_ms": round(latency_s * 1000),
        "latency_us": round(latency_s * 1_000_000),  # added: the precision latency_ms leaves out
    }


def asset_entry(tick: Tick, now: float, latency_s: float, cached: bool = True) -> dict[str, Any]:
    """One priced asset: the seed's eight fields with its types, then ours (docs/api.md)."""
    timing = entry_timing(tick, now, latency_s)
    entry: dict[str, Any] = {
        "asset": tick.asset,
        "price": float(tick.price),
        "exchange": tick.label,
        "cached": cached,
        "cache_age_seconds": timing["cache_age_seconds"],
        "timestamp": unix_seconds(tick.exchange_ts),
        "readable_timestamp": utc_iso(tick.exchange_ts),
        "latency_ms": timing["latency_ms"],
        # Added: the precision the seed's integer fields leave out.
        "timestamp_ms": unix_ms(tick.exchange_ts),
        "latency_us": timing["latency_us"],
    }
    if tick.usd_rate is not None:
        entry["converted_from"] = {"quote": tick.quote, "usd_rate": float(tick.usd_rate)}
    return entry


def median_entry(asset: str, m: Median, now: float, latency_s: float) -> dict[str, Any]:
    newest = max(m.used, key=lambda t: t.exchange_ts)
    entry = asset_entry(newest, now, latency_s)
    entry["asset"] = asset
    entry["price"] = float(m.price)
    entry["exchange"] = "median"
    entry["cache_age_seconds"] = round(min(age(t, now) for t in m.used), 3)
    entry["consensus"] = m.consensus
    entry["dispersion"] = round(float(m.dispersion), 6)
    entry["rejected"] = [t.label for t in m.rejected]
    entry["sources"] = [
        {
            "exchange": s.tick.label,
            "price": float(s.tick.price),
            "age_seconds": round(s.age_s, 3),
            "rejected": s.rejected,
            **({"converted_from": s.tick.quote} if s.tick.usd_rate is not None else {}),
        }
        for s in m.sources
    ]
    return entry


def data_timing(duration_s: float, quota: Quota) -> dict[str, Any]:
    """The fields of an answer's data that change with every answer, in the order they are written."""
    return {
        "duration_ms": round(duration_s * 1000),
        **usage_fields(quota),
        "duration_us": round(duration_s * 1_000_000),  # added: the seed's duration_ms is whole
    }


def price_data(entries: list[dict[str, Any]], failed: list[dict[str, str]], timing: dict[str, Any]) -> dict[str, Any]:
    """An answer's `data`: the entries, what failed and why, then `timing` (data_timing)."""
    return {"assets": entries, "failed": failed, **timing}
