"""Usage metering: in-process counters on the hot path, flushed to the cache in batches.

`record` is a dict update and never awaits. `flush` (every BEAST_USAGE_FLUSH_S, and on a
clean stop) adds the counts to the cache with one pipelined HINCRBY batch; if the cache is
down the counts stay buffered in the process and go out with the next flush that works,
so nothing counted is lost or counted twice.

Cache layout: `{usage}:min:{epoch_minute}` hash, field `key|endpoint|asset|protocol|status|n`
(requests), `...|us` (latency sum, microseconds) and `...|max` (slowest request, µs, kept
with an atomic max); `{usage}:month:{YYYY-MM}` hash, field key id -> billable requests that
month. The sync job (sync.py) renames closed minute hashes to `{usage}:claim:{minute}:{uuid}`
and moves them into the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable

from trinity_beast.stores.cache import Cache, CacheUnavailable

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
Seed = Callable[[str, int, int], Awaitable[int]]


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

    def add(self, other: "Counts") -> None:
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
    current = (month_start(ts), month_reset(ts), datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m"))
    _remember_month(*current)
    return current


def month_of(ts: float) -> str:
    return month_bounds(ts)[2]


def _remember_month(start: float, end: float, name: str) -> None:
    global _current_month
    _current_month = (start, end, name)


_current_month: tuple[float, float, str] = (0.0, 0.0, "")


def month_start(ts: float) -> float:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(dt.year, dt.month, 1, tzinfo=timezone.utc).timestamp()


def month_reset(ts: float) -> float:
    """Epoch seconds when the month containing `ts` ends (UTC)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()


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
    def warning(self) -> str | None:
        if not self.limit:
            return None
        if self.exhausted:
            return f"monthly limit of {self.limit} requests reached"
        for level in WARN_LEVELS:
            if self.pct >= level:
                return f"{level}% of the monthly limit of {self.limit} requests used"
        return None


def _slot() -> list[int]:
    return [0, 0, 0]  # requests, latency sum (µs), latency max (µs)


class Meter:
    def __init__(self, cache: Cache, clock: Callable[[], float] = time.time, seed: Seed | None = None) -> None:
        self._cache = cache
        self._clock = clock
        self._seed = seed  # billable requests the database holds for (key, since, until)
        self._minutes: dict[tuple[int, str], list[int]] = defaultdict(_slot)
        self._month_pending: dict[tuple[str, str], int] = defaultdict(int)
        self._month_known: dict[tuple[str, str], int] = {}
        self._lock = asyncio.Lock()
        self.flush_failures = 0  # flushes deferred because the cache was down

    def record(
        self,
        key_id: str,
        endpoint: str,
        asset: str,
        protocol: str,
        status: int,
        latency_s: float,
        billable: bool,
        now: float | None = None,
        count: int = 1,
    ) -> None:
        """Count `count` answers (a WebSocket update pushed to several clients of one key is one call)."""
        now = self._clock() if now is None else now
        field = FIELD_SEP.join((key_id, endpoint, asset, protocol, str(status)))
        slot = self._minutes[(int(now // 60), field)]
        us = int(latency_s * 1_000_000)
        slot[0] += count
        slot[1] += us * count
        if us > slot[2]:
            slot[2] = us
        if billable:
            self._month_pending[(month_of(now), key_id)] += count

    def quota(self, key_id: str, limit: int, now: float | None = None) -> Quota:
        now = self._clock() if now is None else now
        _, reset_at, month = month_bounds(now)
        used = self._month_known.get((month, key_id), 0) + self._month_pending.get((month, key_id), 0)
        return Quota(used=used, limit=limit, reset_at=reset_at)

    def knows(self, key_id: str, now: float | None = None) -> bool:
        return (month_of(self._clock() if now is None else now), key_id) in self._month_known

    async def load(self, key_id: str, now: float | None = None) -> None:
        """Read a key's month total from the cache (first sight of a key in this process).

        A cache that has no total for the key (a restarted memory cache, a Redis that lost its
        data) is seeded from the database's synced history, once, atomically (HSETNX), so a
        restart never hands a subscriber a fresh month.
        """
        now = self._clock() if now is None else now
        month = month_of(now)
        try:
            totals = await self._cache.hgetall(f"{MONTH_PREFIX}{month}")
            total = totals.get(key_id)
            if total is None and self._seed is not None:
                synced = await self._seed(key_id, int(month_start(now)), int(month_reset(now)))
                total = await self._cache.hsetnx(f"{MONTH_PREFIX}{month}", key_id, synced) if synced else 0
        except CacheUnavailable:
            return
        self._raise_known((month, key_id), total or 0)

    def pending(self) -> int:
        """Requests counted in this process and not yet flushed to the cache."""
        return sum(slot[0] for slot in self._minutes.values())

    def _raise_known(self, key: tuple[str, str], total: int) -> None:
        """A month's total only grows: a read that raced a flush, or a cache that lost its data,
        must never lower what this process already knows was used."""
        if total > self._month_known.get(key, -1):
            self._month_known[key] = total

    async def flush(self) -> int:
        """Send buffered counts to the cache; return how many requests went out."""
        async with self._lock:
            minutes, self._minutes = self._minutes, defaultdict(_slot)
            months, self._month_pending = self._month_pending, defaultdict(int)
            increments: list[tuple[str, str, int]] = []
            maxima: list[tuple[str, str, int]] = []
            for (minute, field), (n, us, top) in minutes.items():
                increments.append((f"{MINUTE_PREFIX}{minute}", field + "|n", n))
                increments.append((f"{MINUTE_PREFIX}{minute}", field + "|us", us))
                maxima.append((f"{MINUTE_PREFIX}{minute}", field + "|max", top))
            month_items = list(months.items())
            increments.extend((f"{MONTH_PREFIX}{m}", key_id, n) for (m, key_id), n in month_items)
            try:
                totals = await self._cache.hincr(increments, maxima) if increments else []
                current = month_of(self._clock())
                fresh = await self._cache.hgetall(f"{MONTH_PREFIX}{current}")
            except CacheUnavailable as exc:
                self.flush_failures += 1
                log.warning("usage flush deferred, cache unavailable: %s", exc)
                for k, (n, us, top) in minutes.items():
                    slot = self._minutes[k]
                    slot[0] += n
                    slot[1] += us
                    slot[2] = max(slot[2], top)
                for k, n in months.items():
                    self._month_pending[k] += n
                return 0
            month_totals = totals[len(totals) - len(month_items):] if month_items else []
            for (key, _), total in zip(month_items, month_totals):
                self._raise_known(key, total)
            for key_id, total in fresh.items():
                self._raise_known((current, key_id), total)
            return sum(slot[0] for slot in minutes.values())

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:  # never let metering stop the server
                log.exception("usage flush failed")


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
