"""The sync job: closed minute buckets move from the cache into the database, exactly once.

For each bucket `{usage}:min:{minute}` whose minute ended more than `grace_s` ago:

1. claim it: an atomic rename to `{usage}:claim:{minute}:{uuid}`. Of many syncs running at
   once only one wins a bucket; late increments for that minute land in a fresh
   `{usage}:min:{minute}` that a later sync adds (upsert ADD);
2. write its counts and a ledger row (batch id = the claimed key's name) in ONE transaction;
   a batch already in the ledger is never written again;
3. delete the claimed key, only after the commit.

A sync first finishes every claimed key it finds (a sync that died between 1 and 3, or
one running right now: the ledger makes the second write a no-op). So a crash at any
point, two syncs at once or a rerun never lose or double a count.

It then applies retention (minute rows older than `minute_days` roll up into hours, hour
rows older than `hour_days` into days; day rows are kept) and calls `prewarm`, if given.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.settings import Settings
from trinity_beast.domain.usage import CLAIM_PREFIX, MINUTE_PREFIX, MONTH_PREFIX, month_of, parse_bucket
from trinity_beast.stores.cache import Cache, CacheUnavailable
from trinity_beast.stores.db import Database

log = logging.getLogger(__name__)

DAY_S = 86400
Hook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Retention:
    minute_days: float = 7.0
    hour_days: float = 90.0


@dataclass(slots=True)
class SyncResult:
    buckets: int = 0  # cache buckets moved into the database by this run
    requests: int = 0  # requests those buckets held
    recovered: int = 0  # claimed keys left by an earlier (or concurrent) sync, finished here
    already_written: int = 0  # claimed keys whose batch was in the ledger: deleted only
    rolled_up: int = 0  # rows folded into coarser rows by retention
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"synced {self.buckets} bucket(s), {self.requests} request(s); recovered {self.recovered}, "
            f"already written {self.already_written}; rolled up {self.rolled_up} row(s)"
        )


def minute_of(key: str) -> int:
    """`{usage}:min:123` or `{usage}:claim:123:abc` -> 123."""
    rest = key[len(MINUTE_PREFIX) :] if key.startswith(MINUTE_PREFIX) else key[len(CLAIM_PREFIX) :]
    return int(rest.split(":", 1)[0])


async def finish_claim(cache: Cache, db: Database, key: str, result: SyncResult, after_commit: Hook | None) -> None:
    """Write a claimed bucket (unless the ledger has it), then delete it from the cache."""
    counts = parse_bucket(await cache.hgetall(key))
    if counts:
        written = await asyncio.to_thread(db.write_usage_batch, key, minute_of(key) * 60, counts, time.time())
        if written:
            result.buckets += 1
            result.requests += sum(c.n for c in counts.values())
        else:
            result.already_written += 1
    if after_commit is not None:
        await after_commit(key)
    await cache.delete(key)


async def apply_retention(cache: Cache, db: Database, now: float, retention: Retention) -> int:
    folded = await asyncio.to_thread(db.roll_up, "minute", "hour", int(now - retention.minute_days * DAY_S))
    folded += await asyncio.to_thread(db.roll_up, "hour", "day", int(now - retention.hour_days * DAY_S))
    # Ledger rows only guard buckets still in the cache; claimed keys never outlive a few syncs.
    await asyncio.to_thread(db.prune_batches, now - retention.minute_days * DAY_S)
    # Month totals drive limits; only this month and the last one can still matter.
    keep = {month_of(now), month_of(_month_start(now) - 1)}
    for key in await cache.keys(MONTH_PREFIX):
        if key.removeprefix(MONTH_PREFIX) not in keep:
            await cache.delete(key)
    return folded


def _month_start(ts: float) -> float:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp()


async def sync_once(
    cache: Cache,
    db: Database,
    *,
    grace_s: float = 5.0,
    retention: Retention = Retention(),
    prewarm: Callable[[], Awaitable[object]] | None = None,
    after_commit: Hook | None = None,
    now: float | None = None,
) -> SyncResult:
    """One pass. `after_commit(batch_id)` runs between the commit and the cache delete
    (tests crash a sync there); `prewarm` refreshes the price cache (failures are logged)."""
    now = time.time() if now is None else now
    result = SyncResult()
    for key in await cache.keys(CLAIM_PREFIX):
        result.recovered += 1
        await finish_claim(cache, db, key, result, after_commit)
    for key in await cache.keys(MINUTE_PREFIX):
        try:
            minute = minute_of(key)
        except ValueError:
            log.warning("ignoring malformed usage bucket %r", key)
            continue
        if (minute + 1) * 60 + grace_s > now:
            continue  # still open: processes may be adding to it
        claimed = f"{CLAIM_PREFIX}{minute}:{uuid.uuid4().hex}"
        if await cache.claim(key, claimed):
            await finish_claim(cache, db, claimed, result, after_commit)
    result.rolled_up = await apply_retention(cache, db, now, retention)
    if prewarm is not None:
        try:
            await prewarm()
        except Exception as exc:  # a failed prewarm must not undo or block metering
            log.exception("prewarm failed")
            result.errors.append(f"prewarm: {exc}")
    return result


@dataclass(slots=True)
class SyncStats:
    """What the sync loop of this process has done (GET /metrics reads it)."""

    runs: int = 0
    failures: int = 0
    buckets: int = 0
    requests: int = 0
    last_success: float | None = None  # epoch seconds
    last_error: str | None = None


STATS = SyncStats()  # the process's sync loop; one per process
RETRY_INITIAL_S = 1.0


async def run_sync(
    cache: Cache,
    db: Database,
    every_s: float,
    *,
    grace_s: float = 5.0,
    retention: Retention = Retention(),
    prewarm: Callable[[], Awaitable[object]] | None = None,
    stats: SyncStats = STATS,
) -> None:
    """Sync now, then every `every_s` seconds, forever.

    A failed pass (cache or database unreachable) is retried sooner, with a doubling delay
    from RETRY_INITIAL_S up to `every_s`: claimed buckets stay in the cache until a pass
    writes them, so a retry loses nothing and the backlog clears as soon as both are back.
    """
    retry_s = RETRY_INITIAL_S
    while True:
        delay = every_s
        stats.runs += 1
        try:
            result = await sync_once(cache, db, grace_s=grace_s, retention=retention, prewarm=prewarm)
            stats.buckets += result.buckets
            stats.requests += result.requests
            stats.last_success = time.time()
            retry_s = RETRY_INITIAL_S
            if result.buckets or result.recovered:
                log.info("usage sync: %s", result.summary())
        except Exception as exc:
            stats.failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"
            delay = min(retry_s, every_s)
            retry_s = min(retry_s * 2, every_s)
            if isinstance(exc, (CacheUnavailable, DatabaseUnavailable)):
                log.warning("usage sync deferred (%s); retrying in %.0f s", stats.last_error, delay)
            else:
                log.exception("usage sync failed; retrying in %.0f s", delay)
        await asyncio.sleep(delay)


def options(settings: Settings) -> dict[str, Any]:
    """sync_once/run_sync keyword arguments from settings.

    The grace period outlasts a usage flush, so a bucket is claimed only once every process
    has flushed into it (late increments are still added, by the next sync).
    """
    return {
        "grace_s": max(5.0, 2 * settings.usage_flush_s + 1),
        "retention": Retention(settings.usage_minute_days, settings.usage_hour_days),
    }
