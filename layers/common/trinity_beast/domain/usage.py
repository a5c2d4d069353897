"""Usage arithmetic: what one counted row is, the cache's field layout, months, quotas.

Plain data and functions shared by the meter (which counts), the sync job (which moves
counts into the database), the database (which stores them) and reports (which read them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


WARN_LEVELS = (90, 80)


FIELD_SEP = "|"


# Every usage key carries the hash tag `{usage}`, so the multi-key operations (the atomic
# flush, the claim rename) stay in one slot on a cluster-mode Redis such as MemoryDB.
MINUTE_PREFIX = "{usage}:min:"


CLAIM_PREFIX = "{usage}:claim:"


MONTH_PREFIX = "{usage}:month:"


# What counts towards a monthly limit: answered price requests and pushed updates (status 200).
BILLABLE_ENDPOINTS = ("/price", "/ws/prices")


@dataclass(frozen=True, slots=True, order=True)
class Group:
    """What one usage row is counted by (besides its time bucket)."""

    api_key_id: str
    endpoint: str
    asset: str
    protocol: str
    status: int


@dataclass(slots=True)
class Counts:
    n: int = 0
    latency_us_sum: int = 0
    latency_us_max: int = 0

    def add(self, other: Counts) -> None:
        self.n += other.n
        self.latency_us_sum += other.latency_us_sum
        self.latency_us_max = max(self.latency_us_max, other.latency_us_max)


def parse_bucket(fields: dict[str, int]) -> dict[Group, Counts]:
    """A minute hash from the cache -> counts per group (unknown fields are skipped, logged)."""
    out: dict[Group, Counts] = {}
    for name, value in fields.items():
        parts = name.split(FIELD_SEP)
        if len(parts) != 6 or not parts[4].isdigit() or parts[5] not in ("n", "us", "max"):
            log.warning("ignoring malformed usage field %r", name)
            continue
        counts = out.setdefault(Group(parts[0], parts[1], parts[2], parts[3], int(parts[4])), Counts())
        if parts[5] == "n":
            counts.n += value
        elif parts[5] == "us":
            counts.latency_us_sum += value
        else:
            counts.latency_us_max = max(counts.latency_us_max, value)
    return {g: c for g, c in out.items() if c.n}


def month_bounds(ts: float) -> tuple[float, float, str]:
    """(start, end, `YYYY-MM`) of the UTC month of `ts`; the current month is remembered, as
    every request asks for it."""
    current = _current_month
    if current[0] <= ts < current[1]:
        return current
    current = (month_start(ts), month_reset(ts), datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m"))
    _remember_month(*current)
    return current


def month_of(ts: float) -> str:
    return month_bounds(ts)[2]


def _remember_month(start: float, end: float, name: str) -> None:
    global _current_month
    _current_month = (start, end, name)


_current_month: tuple[float, float, str] = (0.0, 0.0, "")


def month_start(ts: float) -> float:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp()


def month_reset(ts: float) -> float:
    """Epoch seconds when the month containing `ts` ends (UTC)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a key stands this month."""

    used: int
    limit: int  # 0 = unlimited
    reset_at: float

    @property
    def pct(self) -> float:
        return round(100.0 * self.used / self.limit, 2) if self.limit else 0.0

    @property
    def exhausted(self) -> bool:
        return self.limit > 0 and self.used >= self.limit

    @property
    def remaining(self) -> int | None:
        return None if not self.limit else max(self.limit - self.used, 0)

    @property
    def warning(self) -> str:
        """The seed's `usage_warning`: "" when there is nothing to warn about, never null."""
        if not self.limit:
            return ""
        if self.exhausted:
            return f"monthly limit of {self.limit} requests reached"
        for level in WARN_LEVELS:
            if self.pct >= level:
                return f"{level}% of the monthly limit of {self.limit} requests used"
        return ""


def usage_fields(quota: Quota) -> dict[str, Any]:
    return {
        "monthly_usage": quota.used,
        "monthly_limit": quota.limit,
        "usage_pct": quota.pct,
        "usage_warning": quota.warning,
    }


def rate_limit_headers(quota: Quota | None) -> list[tuple[bytes, bytes]]:
    """X-RateLimit-* headers for an HTTP answer (`unlimited` for keys without a limit)."""
    if quota is None:
        return []
    if not quota.limit:
        limit = remaining = b"unlimited"
    else:
        limit = str(quota.limit).encode()
        remaining = str(quota.remaining).encode()
    return [
        (b"x-ratelimit-limit", limit),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", str(int(quota.reset_at)).encode()),
    ]
