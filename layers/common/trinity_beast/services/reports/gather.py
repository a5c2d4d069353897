"""Gathering a report's rows from the database and the cache, and cutting one page.

Rows come from the database (synced minutes, and older hours/days after roll-up) plus the
cache's buckets the sync job has not moved yet, so a request shows up within seconds.
Reading both while a sync runs could see a bucket twice or not at all, so `gather`
brackets its reads with the cache's claim counter and the database read is one snapshot
(rows and batch ledger together): a claimed bucket counts from the cache exactly when its
batch is not in that snapshot's ledger, and a claim during the read means read again.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Any

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.usage import CLAIM_PREFIX, MINUTE_PREFIX, Counts, Group, parse_bucket
from trinity_beast.services.reports.cursor import encode_cursor
from trinity_beast.services.reports.filters import ReportFilters, iso
from trinity_beast.services.reports.policy import ReportReader
from trinity_beast.stores.cache import Cache, CacheUnavailable
from trinity_beast.stores.db import Database
from trinity_beast.stores.db.base import UsageQuery

log = logging.getLogger(__name__)

_READ_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Row:
    bucket: int
    group: Group
    counts: Counts

    @property
    def key(self) -> tuple[object, ...]:
        g = self.group
        return (self.bucket, g.api_key_id, g.endpoint, g.asset, g.protocol, g.status)

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "period": iso(self.bucket),
            "api_key_id": self.group.api_key_id,
            "endpoint": self.group.endpoint,
            "asset": self.group.asset,
            "protocol": self.group.protocol,
            "status": self.group.status,
            "requests": c.n,
            "latency_avg_ms": round(c.latency_us_sum / c.n / 1000, 3) if c.n else 0.0,
            "latency_max_ms": round(c.latency_us_max / 1000, 3),
        }


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    total: int
    next_cursor: str | None
    includes_unsynced: bool  # False when the cache could not be read: recent minutes may be missing
    missing: tuple[str, ...] = ()  # sources that could not be read: "cache" (unsynced minutes), "database" (history)


async def _cache_buckets(cache: Cache) -> list[tuple[str, int, dict[Group, Counts]]]:
    """(key, minute start, counts) for every minute bucket still in the cache."""
    out = []
    for prefix in (MINUTE_PREFIX, CLAIM_PREFIX):
        for key in await cache.keys(prefix):
            try:
                minute = int(key[len(prefix) :].split(":", 1)[0])
            except ValueError:
                continue
            counts = parse_bucket(await cache.hgetall(key))
            if counts:
                out.append((key, minute * 60, counts))
    return out


def _db_read(
    db: Database, q: UsageQuery, claimed: list[str], timeout_s: float
) -> tuple[list[tuple[int, Group, Counts]], set[str]]:
    with db.snapshot(timeout_s):
        return db.usage_totals(q), db.batches_written(claimed)


async def _db_read_or_missing(
    reader: ReportReader, q: UsageQuery, claimed: list[str], missing: set[str]
) -> tuple[list[tuple[int, Group, Counts]], set[str]]:
    """The database's rows and ledger, or nothing (and "database" in `missing`) when it is down.
    A read past the statement timeout raises StatementTimeout (never half a report)."""
    try:
        return await reader.run(_db_read, reader.db, q, claimed, reader.limits.timeout_s)
    except DatabaseUnavailable as exc:
        log.warning("usage report without synced history, database unavailable: %s", exc)
        missing.add("database")
        return [], set()


async def gather(cache: Cache, reader: ReportReader, f: ReportFilters) -> tuple[list[Row], tuple[str, ...]]:
    """Every row matching `f`, summed per period and group, sorted; and the sources that
    could not be read ("cache": the unsynced minutes; "database": the synced history)."""
    q = f.usage_query()
    missing: set[str] = set()
    for attempt in range(_READ_ATTEMPTS):
        missing.clear()
        try:
            claims = await cache.claims()
            buckets = await _cache_buckets(cache)
        except CacheUnavailable as exc:
            log.warning("usage report without unsynced minutes, cache unavailable: %s", exc)
            db_rows, _ = await _db_read_or_missing(reader, q, [], missing)
            return [Row(b, g, c) for b, g, c in db_rows], tuple(sorted(missing | {"cache"}))
        claimed = [key for key, _, _ in buckets if key.startswith(CLAIM_PREFIX)]
        db_rows, written = await _db_read_or_missing(reader, q, claimed, missing)
        try:
            stable = await cache.claims() == claims
        except CacheUnavailable:
            stable = True  # the cache read above completed; nothing better is available
        if stable or attempt == _READ_ATTEMPTS - 1:
            break
    # Merging and sorting tens of thousands of rows is CPU work: on the report thread, so the
    # event loop keeps answering prices meanwhile.
    rows = await reader.run(_merge, db_rows, written, buckets, f, q)
    return rows, tuple(sorted(missing))


def _merge(
    db_rows: list[tuple[int, Group, Counts]],
    written: set[str],
    buckets: list[tuple[str, int, dict[Group, Counts]]],
    f: ReportFilters,
    q: UsageQuery,
) -> list[Row]:
    merged: dict[tuple[int, Group], Counts] = {(b, g): c for b, g, c in db_rows}
    for key, minute_start, counts in buckets:
        if key in written:
            continue  # its counts are in the database rows already
        for g, c in counts.items():
            if f.matches(minute_start, g):
                merged.setdefault((bucket_of(minute_start, q), g), Counts()).add(c)
    rows = [Row(b, g, c) for (b, g), c in merged.items()]
    rows.sort(key=lambda r: r.key)
    return rows


def bucket_of(ts: int, q: UsageQuery) -> int:
    if q.edges:
        return q.edges[max(bisect.bisect_right(q.edges, ts) - 1, 0)]
    return ts - ts % q.step


async def report(cache: Cache, reader: ReportReader, f: ReportFilters) -> Page:
    """One page of the report."""
    rows, missing = await gather(cache, reader, f)
    first = 0 if f.after is None else bisect.bisect_right([r.key for r in rows], f.after)
    page = rows[first : first + f.limit]
    more = first + f.limit < len(rows)
    cursor = (
        encode_cursor(page[-1].key, f.fingerprint(), (f.start, f.end), key=reader.cursor_key) if more and page else None
    )
    return Page(page, len(rows), cursor, "cache" not in missing, missing)
