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
from collections.abc import Awaitable, Callable

from trinity_beast.domain.usage import (
    FIELD_SEP,
    MINUTE_PREFIX,
    MONTH_PREFIX,
    Quota,
    month_bounds,
    month_of,
    month_reset,
    month_start,
)
from trinity_beast.stores.cache import Cache, CacheUnavailable

log = logging.getLogger(__name__)

Seed = Callable[[str, int, int], Awaitable[int]]


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
                for month_key, n in months.items():
                    self._month_pending[month_key] += n
                return 0
            month_totals = totals[len(totals) - len(month_items) :] if month_items else []
            for (key, _), total in zip(month_items, month_totals, strict=True):
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
