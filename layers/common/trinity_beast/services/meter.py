"""Usage metering: exact monthly limits by reservation, usage rows by in-process counters.

Two kinds of counts (docs/usage.md, "the billing rule"):

- **Month totals** decide the limit. A limited key's units are *reserved* before they are
  delivered: one atomic check-and-increment in the cache (`Cache.reserve`, a Lua script in
  the `{usage}` slot on Redis), so every process sharing the cache sees one total and a key is
  never served past its limit, whatever the concurrency. Unlimited keys (partners) are never
  refused, so their units are added at the next flush instead of costing a round trip.
- **Usage rows** (`record`) are a dict update on the hot path, flushed every
  BEAST_USAGE_FLUSH_S with one atomic HINCRBY batch, then moved to the database by the sync.

When the cache is unreachable a limited key is served up to `offline_allowance` units per
process (never past what the process last knew of its limit) and those units are settled
into the cache, exactly once, by the first flush that works (`Cache.settle`). A cache that
lost its data (its usage marker changed) is detected at the next flush or reservation; the
month totals this process knows are then restored (never lowered, at least what the database
holds) before any further reservation.

Cache layout: `{usage}:min:{epoch_minute}` field `key|endpoint|asset|protocol|status|n`
(units or requests), `…|us` (latency sum, µs), `…|max`; `{usage}:month:{YYYY-MM}` key id ->
billable units; `{usage}:own:{YYYY-MM}` `owner|key id` -> units that process reserved.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trinity_beast.domain.usage import (
    FIELD_SEP,
    MINUTE_PREFIX,
    MONTH_PREFIX,
    OWN_PREFIX,
    Quota,
    month_bounds,
    month_of,
    month_reset,
    month_start,
)
from trinity_beast.stores.cache import Cache, CacheUnavailable

log = logging.getLogger(__name__)

Seed = Callable[[str, int, int], Awaitable[int]]
Hook = Callable[[], Awaitable[object]]

RESERVE_TIMEOUT_S = 1.0  # a reservation the cache has not answered by then is served offline
MonthKey = tuple[str, str]  # (YYYY-MM, key id)


def _slot() -> list[int]:
    return [0, 0, 0]  # requests, latency sum (µs), latency max (µs)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a reservation gave: `units` (0..asked) and where the key stands after it.

    `offline` is True when the cache was unreachable and the units (if any) came from the
    process's local allowance; 0 units with `offline` means the allowance is used up.
    """

    units: int
    quota: Quota
    offline: bool = False


class Meter:
    def __init__(
        self,
        cache: Cache,
        clock: Callable[[], float] = time.time,
        seed: Seed | None = None,
        offline_allowance: int = 100,
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._seed = seed  # billable units the database holds for (key, since, until)
        self.offline_allowance = offline_allowance
        self.owner = uuid.uuid4().hex[:12]  # this process, in the cache's `own` hash
        self._minutes: dict[tuple[int, str], list[int]] = defaultdict(_slot)
        self._month_pending: dict[MonthKey, int] = defaultdict(int)  # unlimited keys, not yet flushed
        self._month_known: dict[MonthKey, int] = {}  # the month total as last read from the cache
        self._mine: dict[MonthKey, int] = defaultdict(int)  # units this process reserved (limited keys)
        self._offline: dict[MonthKey, int] = defaultdict(int)  # of those, served while the cache was down
        self._marker: str | None = None  # the cache's usage marker as this process knows it
        self._down = False  # the last cache call failed: reserve from the allowance until a flush works
        self._calls = 0  # reservations in flight to the cache
        self._lock = asyncio.Lock()
        self._restore_lock = asyncio.Lock()
        self.flush_failures = 0  # flushes deferred because the cache was down
        self.losses = 0  # times this process found the cache had lost its usage data
        self.lost_at: float | None = None  # when it last did
        self.restoring = False  # month totals being restored after a loss

    # ---- rows --------------------------------------------------------------------------------
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
        """Count `count` answers in the usage rows; `billable` also adds them to the month total
        at the next flush (unlimited keys: limited keys' units are reserved instead)."""
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

    # ---- month totals --------------------------------------------------------------------------
    def quota(self, key_id: str, limit: int, now: float | None = None) -> Quota:
        """Where a key stands as this process knows it: the cache's total plus what it holds
        back (unflushed units of unlimited keys, units served offline) — visible during a flush too."""
        now = self._clock() if now is None else now
        _, reset_at, month = month_bounds(now)
        key = (month, key_id)
        used = self._month_known.get(key, 0) + self._month_pending.get(key, 0) + self._offline.get(key, 0)
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
            await self._check_marker()
            totals = await self._cache.hgetall(f"{MONTH_PREFIX}{month}")
            total = totals.get(key_id)
            if total is None and self._seed is not None:
                synced = await self._seed(key_id, int(month_start(now)), int(month_reset(now)))
                total = await self._cache.hsetnx(f"{MONTH_PREFIX}{month}", key_id, synced) if synced else 0
        except CacheUnavailable:
            return
        self._raise_known((month, key_id), total or 0)

    async def reserve(
        self, key_id: str, limit: int, units: int, now: float | None = None, _retry: bool = True
    ) -> Grant:
        """Take up to `units` of a limited key's month before delivering them (never past `limit`).

        Atomic in the cache, so concurrent requests and processes never overshoot. Unserved
        units must be given back with `release`.
        """
        now = self._clock() if now is None else now
        _, reset_at, month = month_bounds(now)
        key = (month, key_id)
        if self._marker is None and not self._down:
            try:
                await self._check_marker()
            except CacheUnavailable as exc:
                self._go_down(exc)
        if not self._down and self._marker is not None:
            self._calls += 1
            try:
                granted, total = await asyncio.wait_for(
                    self._cache.reserve(
                        f"{MONTH_PREFIX}{month}", f"{OWN_PREFIX}{month}", key_id, self.owner, units, limit, self._marker
                    ),
                    RESERVE_TIMEOUT_S,
                )
            except (CacheUnavailable, TimeoutError) as exc:
                # Maybe applied, maybe not: Meter.settle counts these units exactly once later.
                self._go_down(exc)
            else:
                if granted >= 0:
                    self._mine[key] += granted
                    self._raise_known(key, total)
                    return Grant(granted, Quota(total + self._offline.get(key, 0), limit, reset_at))
            finally:
                self._calls -= 1
            if _retry:  # the cache lost its data: restore the month totals, then reserve again
                try:
                    await self._check_marker(force=True)
                except CacheUnavailable as exc:
                    self._go_down(exc)
                return await self.reserve(key_id, limit, units, now, _retry=False)
        return self._reserve_offline(key, limit, units, reset_at)

    def _reserve_offline(self, key: MonthKey, limit: int, units: int, reset_at: float) -> Grant:
        """The cache is unreachable: serve from the local allowance, within the limit as last known
        (a key whose month this process never read is refused: what is left of it is unknown)."""
        if key not in self._month_known:
            return Grant(0, Quota(self._offline.get(key, 0), limit, reset_at), offline=True)
        known = self._month_known[key]
        offline = self._offline.get(key, 0)
        room = min(units, self.offline_allowance - offline, limit - known - offline)
        granted = max(room, 0)
        if granted:
            self._offline[key] += granted
            self._mine[key] += granted
        return Grant(granted, Quota(known + offline + granted, limit, reset_at), offline=True)

    async def release(self, key_id: str, units: int, now: float | None = None) -> None:
        """Give back reserved units that were not delivered (a send that failed)."""
        if units <= 0:
            return
        month = month_of(self._clock() if now is None else now)
        key = (month, key_id)
        self._mine[key] -= units
        local = min(max(self._offline.get(key, 0), 0), units)  # served offline: never reached the cache
        self._offline[key] -= local
        rest = units - local
        if not rest:
            return
        try:
            await self._cache.reserve(
                f"{MONTH_PREFIX}{month}", f"{OWN_PREFIX}{month}", key_id, self.owner, -rest, 0, self._marker or ""
            )
        except CacheUnavailable as exc:
            self._go_down(exc)
            self._offline[key] -= rest  # settled (with the lower own total) by the next flush
        else:
            # The total this process knows included these units (reserve raised it past them):
            # without this a given-back request would still count against the key here (429s).
            if key in self._month_known:
                self._month_known[key] = max(self._month_known[key] - rest, 0)

    def _go_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning(
                "usage cache unreachable (%s): limited keys served from the local allowance of %d",
                type(exc).__name__,
                self.offline_allowance,
            )
        self._down = True

    def _raise_known(self, key: MonthKey, total: int) -> None:
        """A month's total only grows: a read that raced a flush, or a cache that lost its data,
        must never lower what this process already knows was used."""
        if total > self._month_known.get(key, -1):
            self._month_known[key] = total

    # ---- the cache's data ------------------------------------------------------------------
    async def _check_marker(self, force: bool = False) -> None:
        """Compare the cache's usage marker with ours; on a change (the cache lost its data)
        restore the month totals before adopting the new marker, so no reservation of this
        process runs against the emptied totals meanwhile (they are refused by the old marker)."""
        if self._marker is not None and not force:
            return
        held = await self._cache.mark(uuid.uuid4().hex)  # set only if absent: a new one means a loss
        if self._marker is None:
            self._marker = held
            return
        if held == self._marker:
            return
        async with self._restore_lock:
            if held == self._marker:  # restored by another task meanwhile
                return
            self.losses += 1
            self.lost_at = self._clock()
            log.error("the cache lost its usage data (marker %s, was %s): restoring month totals", held, self._marker)
            await self._restore()
            self._marker = held

    async def _restore(self) -> None:
        """After a loss: raise every month total this process knows to at least what it knew
        plus what it served offline (and what the database holds), and reset its own totals
        without adding them again."""
        self.restoring = True
        try:
            current = month_of(self._clock())
            for (month, key_id), known in list(self._month_known.items()):
                if month != current:
                    continue
                value = known + self._offline.get((month, key_id), 0)
                if self._seed is not None:
                    now = self._clock()
                    value = max(value, await self._seed(key_id, int(month_start(now)), int(month_reset(now))))
                await self._cache.hincr([], [(f"{MONTH_PREFIX}{month}", key_id, value)])
            for (month, key_id), mine in list(self._mine.items()):
                await self._cache.settle(
                    f"{MONTH_PREFIX}{month}", f"{OWN_PREFIX}{month}", key_id, self.owner, mine, False
                )
                self._offline.pop((month, key_id), None)
        finally:
            self.restoring = False

    async def _settle_offline(self) -> None:
        """Count the units served while the cache was unreachable, exactly once (Cache.settle)."""
        for key in [k for k, n in self._offline.items() if n]:
            month, key_id = key
            units = self._offline[key]
            total = await self._cache.settle(
                f"{MONTH_PREFIX}{month}", f"{OWN_PREFIX}{month}", key_id, self.owner, self._mine[key], True
            )
            self._offline[key] -= units
            self._raise_known(key, total)

    # ---- flushing ------------------------------------------------------------------------------
    def offline_units(self) -> int:
        """Units served to limited keys while the cache was unreachable, not yet settled."""
        return sum(self._offline.values())

    def pending(self) -> int:
        """Requests counted in this process and not yet flushed to the cache."""
        return sum(slot[0] for slot in self._minutes.values())

    async def flush(self) -> int:
        """Send buffered counts to the cache; return how many requests went out."""
        async with self._lock:
            minutes, self._minutes = self._minutes, defaultdict(_slot)
            months = {k: n for k, n in self._month_pending.items() if n}
            increments: list[tuple[str, str, int]] = []
            maxima: list[tuple[str, str, int]] = []
            for (minute, field), (n, us, top) in minutes.items():
                increments.append((f"{MINUTE_PREFIX}{minute}", field + "|n", n))
                increments.append((f"{MINUTE_PREFIX}{minute}", field + "|us", us))
                maxima.append((f"{MINUTE_PREFIX}{minute}", field + "|max", top))
            month_items = list(months.items())
            increments.extend((f"{MONTH_PREFIX}{m}", key_id, n) for (m, key_id), n in month_items)
            try:
                await self._check_marker(force=True)
                if self._down and self._calls == 0:
                    # No reservation in doubt, and none is sent while down: settle until nothing
                    # served offline is left, then reserve in the cache again.
                    while any(self._offline.values()):
                        await self._settle_offline()
                    self._down = False
                totals = await self._cache.hincr(increments, maxima) if increments else []
            except CacheUnavailable as exc:
                self.flush_failures += 1
                self._go_down(exc)
                log.warning("usage flush deferred, cache unavailable: %s", exc)
                for k, (n, us, top) in minutes.items():
                    slot = self._minutes[k]
                    slot[0] += n
                    slot[1] += us
                    slot[2] = max(slot[2], top)
                return 0
            # The increments are in the cache from here on: whatever fails next must not put them
            # back in the buffer, or the next flush would count them twice.
            for key, n in month_items:  # flushed: now part of the cache's total
                self._month_pending[key] -= n
            month_totals = totals[len(totals) - len(month_items) :] if month_items else []
            for (key, _), total in zip(month_items, month_totals, strict=True):
                self._raise_known(key, total)
            sent = sum(slot[0] for slot in minutes.values())
            current = month_of(self._clock())
            try:
                fresh = await self._cache.hgetall(f"{MONTH_PREFIX}{current}")
            except CacheUnavailable as exc:  # only the other processes' totals are unknown for now
                self.flush_failures += 1
                self._go_down(exc)
                log.warning("usage flush: counts sent, month totals not read (cache unavailable): %s", exc)
                return sent
            for key_id, total in fresh.items():
                self._raise_known((current, key_id), total)
            return sent

    async def run(self, interval: float, after: Hook | None = None) -> None:
        """Flush every `interval` seconds; `after` runs after each flush (the embedded mode
        writes the counts to SQLite there)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
                if after is not None:
                    await after()
            except Exception:  # never let metering stop the server
                log.exception("usage flush failed")
