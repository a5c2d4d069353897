"""Usage reports: parse the filters, gather the rows, render them in four formats.

Rows come from the database (synced minutes, and older hours/days after roll-up) plus the
cache's buckets the sync job has not moved yet, so a request shows up within seconds.
Reading both while a sync runs could see a bucket twice or not at all, so `gather`
brackets its reads with the cache's claim counter and the database read is one snapshot
(rows and batch ledger together): a claimed bucket counts from the cache exactly when its
batch is not in that snapshot's ledger, and a claim during the read means read again.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import csv
import hashlib
import hmac
import io
import logging
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import orjson

from trinity_beast.stores.cache import Cache, CacheUnavailable
from trinity_beast.stores.db import Database
from trinity_beast.stores.db.base import GRAIN_SECONDS, UsageQuery
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.usage import CLAIM_PREFIX, MINUTE_PREFIX, Counts, Group, parse_bucket

log = logging.getLogger(__name__)

FORMATS = ("json", "csv", "tsv", "text")
GRANULARITIES = ("minute", "hour", "day", "month")
PROTOCOLS = ("http", "udp", "ws")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
PARAMETERS = frozenset(
    {"format", "from", "to", "api_key_id", "endpoint", "asset", "protocol", "status", "granularity", "limit", "cursor", "api_key"}
)
COLUMNS = (
    "period", "api_key_id", "endpoint", "asset", "protocol", "status", "requests", "latency_avg_ms", "latency_max_ms"
)
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
_KEY_ID_RE = re.compile(r"^ak_[0-9a-f]{1,64}$")
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,15}$")
_ENDPOINT_RE = re.compile(r"^/[A-Za-z0-9/_\-.]{0,99}$")
_CURSOR_KEY = b"trinity-beast-report-cursor"  # detects edits, not a secret: isolation never relies on it
_READ_ATTEMPTS = 5


class ReportError(ValueError):
    """A filter the caller must fix (400); the message says which and how."""


@dataclass(frozen=True, slots=True)
class ReportFilters:
    format: str
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive
    granularity: str
    api_key_id: str | None
    endpoint: str | None
    asset: str | None
    protocol: str | None
    status: int | None
    limit: int
    after: tuple | None  # the last row key of the previous page

    def fingerprint(self) -> str:
        """What a cursor belongs to: every filter except the page position and the format."""
        parts = (self.start, self.end, self.granularity, self.api_key_id, self.endpoint, self.asset, self.protocol, self.status)
        return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()

    def usage_query(self) -> UsageQuery:
        if self.granularity == "month":
            edges = month_edges(self.start, self.end)
            return UsageQuery(self.start, self.end, edges=edges, **self._group_filters())
        return UsageQuery(self.start, self.end, step=GRAIN_SECONDS[self.granularity], **self._group_filters())

    def _group_filters(self) -> dict[str, Any]:
        return {
            "api_key_id": self.api_key_id,
            "endpoint": self.endpoint,
            "asset": self.asset,
            "protocol": self.protocol,
            "status": self.status,
        }

    def matches(self, minute_start: int, g: Group) -> bool:
        """The Python twin of UsageQuery.where_sql, for the cache's rows."""
        return (
            self.start <= minute_start < self.end
            and self.api_key_id in (None, g.api_key_id)
            and self.endpoint in (None, g.endpoint)
            and self.protocol in (None, g.protocol)
            and self.status in (None, g.status)
            and (self.asset is None or self.asset in g.asset.split(","))
        )

    def echo(self) -> dict[str, Any]:
        return {
            "from": iso(self.start),
            "to": iso(self.end),
            "granularity": self.granularity,
            "api_key_id": self.api_key_id,
            "endpoint": self.endpoint,
            "asset": self.asset,
            "protocol": self.protocol,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Row:
    bucket: int
    group: Group
    counts: Counts

    @property
    def key(self) -> tuple:
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


# --- filters -------------------------------------------------------------------------------


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_start(ts: int) -> datetime:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(dt.year, dt.month, 1, tzinfo=timezone.utc)


def month_edges(start: int, end: int) -> tuple[int, ...]:
    """Starts of every calendar month that overlaps [start, end)."""
    edges = []
    current = month_start(start)
    while current.timestamp() < end or not edges:
        edges.append(int(current.timestamp()))
        year, month = (current.year + 1, 1) if current.month == 12 else (current.year, current.month + 1)
        current = current.replace(year=year, month=month)
    return tuple(edges)


def parse_time(name: str, raw: str, end_of_day: bool) -> int:
    """ISO date (`2026-01-31`) or date-time (`2026-01-31T10:00:00Z`, naive = UTC).

    A date alone as `to` means the end of that day, so from=to=a date is that whole day.
    """
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            dt = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            if end_of_day:
                dt += timedelta(days=1)
        else:
            dt = datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise ReportError(
            f"{name}: expected an ISO date or date-time such as 2026-01-31 or 2026-01-31T10:00:00Z, got {raw[:40]!r}"
        ) from None
    if not 1970 <= dt.year <= 9998:
        raise ReportError(f"{name}: expected a year between 1970 and 9998, got {raw[:40]!r}")
    return int(dt.timestamp())


def _single(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in params:
        if name not in PARAMETERS:
            raise ReportError(f"unknown parameter {name[:40]!r}; known: {', '.join(sorted(PARAMETERS - {'api_key'}))}")
        if name in out:
            raise ReportError(f"{name}: give it once")
        out[name] = value
    return out


def parse_filters(params: Sequence[tuple[str, str]], now: float) -> ReportFilters:
    """Validate query parameters (as (name, value) pairs); raise ReportError for the first bad one."""
    p = _single(params)
    fmt = p.get("format", "json").strip().lower() or "json"
    if fmt not in FORMATS:
        raise ReportError(f"format: expected one of {', '.join(FORMATS)}, got {p['format'][:20]!r}")
    granularity = p.get("granularity", "hour").strip().lower() or "hour"
    if granularity not in GRANULARITIES:
        raise ReportError(f"granularity: expected one of {', '.join(GRANULARITIES)}, got {p['granularity'][:20]!r}")
    # Later pages of a report asked without from/to keep the range the first page resolved.
    span = cursor_span(p["cursor"]) if p.get("cursor") else None
    start = parse_time("from", p["from"], False) if p.get("from") else span[0] if span else int(month_start(int(now)).timestamp())
    end = parse_time("to", p["to"], True) if p.get("to") else span[1] if span else int(now) + 60
    if start >= end:
        raise ReportError(f"from ({iso(start)}) must be before to ({iso(end)}; a date alone as to means its end)")

    key_id = p.get("api_key_id") or None
    if key_id is not None and not _KEY_ID_RE.match(key_id):
        raise ReportError(f"api_key_id: expected a public key id such as ak_3f1c9a0e5b7d2468, got {key_id[:40]!r}")
    endpoint = p.get("endpoint") or None
    if endpoint is not None and not _ENDPOINT_RE.match(endpoint):
        raise ReportError(f"endpoint: expected a path such as /price, got {endpoint[:40]!r}")
    asset = p["asset"].strip().upper() if p.get("asset") else None
    if asset is not None and not _ASSET_RE.match(asset):
        raise ReportError(f"asset: expected 1-15 letters or digits such as BTC, got {p['asset'][:40]!r}")
    protocol = p["protocol"].strip().lower() if p.get("protocol") else None
    if protocol is not None and protocol not in PROTOCOLS:
        raise ReportError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {p['protocol'][:20]!r}")
    status = None
    if p.get("status"):
        if not (p["status"].isdigit() and 100 <= int(p["status"]) <= 599):
            raise ReportError(f"status: expected an HTTP status code 100-599, got {p['status'][:20]!r}")
        status = int(p["status"])
    raw_limit = p.get("limit", str(DEFAULT_LIMIT))
    if not (raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise ReportError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")

    filters = ReportFilters(
        fmt, start, end, granularity, key_id, endpoint, asset, protocol, status, int(raw_limit), None
    )
    if p.get("cursor"):
        filters = replace(filters, after=decode_cursor(p["cursor"], filters.fingerprint()))
    return filters


# --- cursor --------------------------------------------------------------------------------


def _sign(payload: bytes) -> str:
    return hashlib.blake2b(payload, key=_CURSOR_KEY, digest_size=8).hexdigest()


def encode_cursor(after: tuple, fingerprint: str, span: tuple[int, int] | None = None) -> str:
    """`span`: the report's (start, end) as the first page resolved them, so later pages asked
    without from/to cover the same range even when "now" has moved on."""
    payload = orjson.dumps({"after": list(after), "q": fingerprint, **({"span": list(span)} if span else {})})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(payload)


_BAD_CURSOR = "cursor: not a cursor from this report; start again without one"


def _cursor_payload(cursor: str) -> dict[str, Any]:
    """The signed payload of a cursor; ReportError when it was not made here or was edited."""
    body, _, mac = cursor.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise ReportError(_BAD_CURSOR) from None
    if not mac or not hmac.compare_digest(_sign(payload).encode(), mac.encode("utf-8", "surrogatepass")):
        raise ReportError(_BAD_CURSOR)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ReportError(_BAD_CURSOR) from None
    if not isinstance(data, dict):
        raise ReportError(_BAD_CURSOR)
    return data


def cursor_span(cursor: str) -> tuple[int, int] | None:
    span = _cursor_payload(cursor).get("span")
    if span is None:
        return None
    if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
        raise ReportError(_BAD_CURSOR)
    return span[0], span[1]


def decode_cursor(cursor: str, fingerprint: str) -> tuple:
    bad = ReportError(_BAD_CURSOR)
    data = _cursor_payload(cursor)
    try:
        after = data["after"]
        shape_ok = (
            isinstance(after, list) and len(after) == 6 and isinstance(after[0], int) and isinstance(after[5], int)
            and all(isinstance(v, str) for v in after[1:5])
        )
    except (KeyError, TypeError):
        raise bad from None
    if not shape_ok:
        raise bad
    if data.get("q") != fingerprint:
        raise ReportError("cursor: it belongs to a report with other filters; start again without one")
    return tuple(after)


# --- gathering -----------------------------------------------------------------------------


async def _cache_buckets(cache: Cache) -> list[tuple[str, int, dict[Group, Counts]]]:
    """(key, minute start, counts) for every minute bucket still in the cache."""
    out = []
    for prefix in (MINUTE_PREFIX, CLAIM_PREFIX):
        for key in await cache.keys(prefix):
            try:
                minute = int(key[len(prefix):].split(":", 1)[0])
            except ValueError:
                continue
            counts = parse_bucket(await cache.hgetall(key))
            if counts:
                out.append((key, minute * 60, counts))
    return out


def _db_read(db: Database, q: UsageQuery, claimed: list[str]) -> tuple[list[tuple[int, Group, Counts]], set[str]]:
    with db.snapshot():
        return db.usage_totals(q), db.batches_written(claimed)


async def _db_read_or_missing(
    db: Database, q: UsageQuery, claimed: list[str], missing: set[str]
) -> tuple[list[tuple[int, Group, Counts]], set[str]]:
    """The database's rows and ledger, or nothing (and "database" in `missing`) when it is down."""
    try:
        return await asyncio.to_thread(_db_read, db, q, claimed)
    except DatabaseUnavailable as exc:
        log.warning("usage report without synced history, database unavailable: %s", exc)
        missing.add("database")
        return [], set()


async def gather(cache: Cache, db: Database, f: ReportFilters) -> tuple[list[Row], tuple[str, ...]]:
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
            db_rows, _ = await _db_read_or_missing(db, q, [], missing)
            return [Row(b, g, c) for b, g, c in db_rows], tuple(sorted(missing | {"cache"}))
        claimed = [key for key, _, _ in buckets if key.startswith(CLAIM_PREFIX)]
        db_rows, written = await _db_read_or_missing(db, q, claimed, missing)
        try:
            stable = await cache.claims() == claims
        except CacheUnavailable:
            stable = True  # the cache read above completed; nothing better is available
        if stable or attempt == _READ_ATTEMPTS - 1:
            break
    merged: dict[tuple[int, Group], Counts] = {(b, g): c for b, g, c in db_rows}
    for key, minute_start, counts in buckets:
        if key in written:
            continue  # its counts are in the database rows already
        for g, c in counts.items():
            if f.matches(minute_start, g):
                merged.setdefault((bucket_of(minute_start, q), g), Counts()).add(c)
    rows = [Row(b, g, c) for (b, g), c in merged.items()]
    rows.sort(key=lambda r: r.key)
    return rows, tuple(sorted(missing))


def bucket_of(ts: int, q: UsageQuery) -> int:
    if q.edges:
        return q.edges[max(bisect.bisect_right(q.edges, ts) - 1, 0)]
    return ts - ts % q.step


async def report(cache: Cache, db: Database, f: ReportFilters) -> Page:
    """One page of the report."""
    rows, missing = await gather(cache, db, f)
    first = 0 if f.after is None else bisect.bisect_right([r.key for r in rows], f.after)
    page = rows[first : first + f.limit]
    more = first + f.limit < len(rows)
    cursor = encode_cursor(page[-1].key, f.fingerprint(), (f.start, f.end)) if more and page else None
    return Page(page, len(rows), cursor, "cache" not in missing, missing)


# --- rendering -----------------------------------------------------------------------------


def neutralize(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula: prefix risky text with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _cells(rows: Iterable[Row]) -> Iterable[list[Any]]:
    for row in rows:
        d = row.as_dict()
        yield [neutralize(d[c]) for c in COLUMNS]


def render_csv(rows: Sequence[Row]) -> bytes:
    """RFC 4180: CRLF lines, a header row, fields quoted when they need it, UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(rows))
    return out.getvalue().encode("utf-8")


def render_tsv(rows: Sequence[Row]) -> bytes:
    """Tab-separated, one line per row, no quoting: tabs and newlines never occur in a field."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    writer.writerow(COLUMNS)
    for cells in _cells(rows):
        writer.writerow([re.sub(r"[\t\r\n]", " ", str(c)) for c in cells])
    return out.getvalue().encode("utf-8")


def render_text(rows: Sequence[Row], total: int) -> bytes:
    """An aligned table for people: text left, numbers right, a line under the header."""
    table = [list(COLUMNS)] + [[str(row.as_dict()[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {"status", "requests", "latency_avg_ms", "latency_max_ms"}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if COLUMNS[i] in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    out.extend(line(cells) for cells in table[1:])
    out.append("")
    out.append(f"{len(rows)} row(s) of {total}")
    return ("\n".join(out) + "\n").encode("utf-8")


def filename(f: ReportFilters) -> str:
    day = lambda ts: datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y%m%d")  # noqa: E731
    ext = {"csv": "csv", "tsv": "tsv", "text": "txt", "json": "json"}[f.format]
    return f"usage-{day(f.start)}-{day(max(f.end - 1, f.start))}-{f.granularity}.{ext}"


def page_data(f: ReportFilters, page: Page) -> dict[str, Any]:
    """The JSON report's `data`."""
    return {
        "rows": [row.as_dict() for row in page.rows],
        "paging": {"total": page.total, "limit": f.limit, "returned": len(page.rows), "next_cursor": page.next_cursor},
        "filters": f.echo(),
        "includes_unsynced": page.includes_unsynced,
        "missing": list(page.missing),
    }


def render_file(f: ReportFilters, page: Page) -> tuple[bytes, dict[str, str]]:
    """A CSV, TSV or text report and its headers (paging goes in headers for files)."""
    if f.format == "csv":
        body = render_csv(page.rows)
    elif f.format == "tsv":
        body = render_tsv(page.rows)
    else:
        body = render_text(page.rows, page.total)
    headers = {
        "Content-Disposition": f'attachment; filename="{filename(f)}"',
        "X-Total-Count": str(page.total),
        "X-Page-Limit": str(f.limit),
        "X-Includes-Unsynced": "true" if page.includes_unsynced else "false",
    }
    if page.missing:
        headers["X-Missing"] = ",".join(page.missing)
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return body, headers

