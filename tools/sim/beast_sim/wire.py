"""What every simulated exchange writes besides its payloads: its own clock, time formats, JSON.

Kept apart from the protocols so the WebSocket and REST sides of an exchange share one clock:
an exchange's clock may run off ours (Simulator.set_clock_skew), set per session task in
CLOCK_SKEW, and every timestamp it writes goes through `exchange_time`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# Seconds the current exchange's clock is off (Simulator.set_clock_skew); set per session task.
CLOCK_SKEW: ContextVar[float] = ContextVar("sim_clock_skew", default=0.0)


def exchange_time() -> float:
    """The simulated exchange's own clock: ours plus its skew."""
    return time.time() + CLOCK_SKEW.get()


def now_ms() -> int:
    return int(exchange_time() * 1000)


def rfc3339_ns(ts: float | None = None) -> str:
    """Coinbase's envelope time: RFC 3339 with nanoseconds."""
    ts = exchange_time() if ts is None else ts
    dt = datetime.fromtimestamp(ts, UTC)
    ns = round((ts % 1) * 1e9) % 1_000_000_000
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ns:09d}Z"


def rfc3339_us(ts: float | None = None) -> str:
    ts = exchange_time() if ts is None else ts
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads_or_none(text: str) -> Any:
    """A client frame decoded, or None when it is not JSON (each exchange answers that its own way)."""
    try:
        return orjson.loads(text)
    except ValueError:
        return None
