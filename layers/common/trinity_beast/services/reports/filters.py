"""Report filters: the query parameters a report accepts, checked into `ReportFilters`.

Every transport (HTTP, UDP, Lambda, the Command Center) parses through here, so a bad
parameter gets the same clear message everywhere and nothing is read before it is valid.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from trinity_beast.domain.text import asset_symbol, whole_number
from trinity_beast.domain.usage import Group
from trinity_beast.services.reports.cursor import cursor_span, decode_cursor
from trinity_beast.services.reports.errors import ReportError
from trinity_beast.services.reports.policy import ReportLimits
from trinity_beast.stores.db.base import GRAIN_SECONDS, UsageQuery

FORMATS = ("json", "csv", "tsv", "text")
GRANULARITIES = ("minute", "hour", "day", "month")
PROTOCOLS = ("http", "udp", "ws")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
PARAMETERS = frozenset(
    {
        "format",
        "from",
        "to",
        "api_key_id",
        "endpoint",
        "asset",
        "protocol",
        "status",
        "granularity",
        "limit",
        "cursor",
        "api_key",
    }
)
_KEY_ID_RE = re.compile(r"^ak_[0-9a-f]{1,64}$")
_ENDPOINT_RE = re.compile(r"^/[A-Za-z0-9/_\-.]{0,99}$")


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
    after: tuple[object, ...] | None  # the last row key of the previous page

    def fingerprint(self) -> str:
        """What a cursor belongs to: every filter except the page position and the format."""
        parts = (
            self.start,
            self.end,
            self.granularity,
            self.api_key_id,
            self.endpoint,
            self.asset,
            self.protocol,
            self.status,
        )
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


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_start(ts: int) -> datetime:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC)


def month_edges(start: int, end: int) -> tuple[int, ...]:
    """Starts of every calendar month that overlaps [start, end)."""
    edges: list[int] = []
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
    if not raw.isascii():
        raise ReportError(f"{name}: expected an ISO date or date-time in ASCII digits, got {raw[:40]!r}")
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            dt = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end_of_day:
                dt += timedelta(days=1)
        else:
            dt = datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
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


def periods(start: int, end: int, granularity: str) -> int:
    """How many report periods (rows per group) [start, end) spans at `granularity`."""
    if granularity == "month":
        first, last = month_start(start), month_start(end - 1)
        return (last.year - first.year) * 12 + last.month - first.month + 1
    step = GRAIN_SECONDS[granularity]
    return (end - 1) // step - start // step + 1


def check_span(start: int, end: int, granularity: str, limits: ReportLimits) -> None:
    """ReportError (400) naming the limit when [start, end) is too long for one request."""
    max_days = limits.max_days[granularity]
    days = (end - start) / 86_400
    if days > max_days:
        raise ReportError(
            f"range: {days:,.1f} days asked; at most {max_days:,} days per request at granularity={granularity} "
            f"(limit BEAST_REPORT_MAX_DAYS_{granularity.upper()}): narrow from/to or use a coarser granularity"
        )
    count = periods(start, end, granularity)
    if count > limits.max_buckets:
        raise ReportError(
            f"range: {count:,} {granularity} periods asked; at most {limits.max_buckets:,} per request "
            f"(limit BEAST_REPORT_MAX_BUCKETS): narrow from/to or use a coarser granularity"
        )


def parse_filters(
    params: Sequence[tuple[str, str]],
    now: float,
    limits: ReportLimits,
    cursor_key: bytes,
    own_key: str | None = None,
) -> ReportFilters:
    """Validate query parameters (as (name, value) pairs); raise ReportError for the first bad one.

    Without `from`, a report starts at the beginning of this month, or later when the
    granularity's range limit is shorter than that."""
    p = _single(params)
    fmt = p.get("format", "json").strip().lower() or "json"
    if fmt not in FORMATS:
        raise ReportError(f"format: expected one of {', '.join(FORMATS)}, got {p['format'][:20]!r}")
    granularity = p.get("granularity", "hour").strip().lower() or "hour"
    if granularity not in GRANULARITIES:
        raise ReportError(f"granularity: expected one of {', '.join(GRANULARITIES)}, got {p['granularity'][:20]!r}")
    # Later pages of a report asked without from/to keep the range the first page resolved.
    span = cursor_span(p["cursor"], key=cursor_key) if p.get("cursor") else None
    end = parse_time("to", p["to"], True) if p.get("to") else span[1] if span else int(now) + 60
    if p.get("from"):
        start = parse_time("from", p["from"], False)
    elif span:
        start = span[0]
    else:
        start = int(month_start(int(now)).timestamp())
        if granularity != "month":  # this month so far, or as much of it as the limits allow
            step = GRAIN_SECONDS[granularity]
            earliest = max(end - limits.max_days[granularity] * 86_400, (end // step - limits.max_buckets + 1) * step)
            start = max(start, earliest + (-earliest % 60))
    if start >= end:
        raise ReportError(f"from ({iso(start)}) must be before to ({iso(end)}; a date alone as to means its end)")
    check_span(start, end, granularity, limits)

    key_id = p.get("api_key_id") or None
    if key_id is not None and not _KEY_ID_RE.fullmatch(key_id):
        raise ReportError(f"api_key_id: expected a public key id such as ak_3f1c9a0e5b7d2468, got {key_id[:40]!r}")
    if own_key is not None:  # a key that sees only its own usage: scoped before a cursor is checked,
        if key_id not in (None, own_key):  # so a cursor from a wider report is foreign (400)
            raise PermissionError(f"this key sees only its own usage (api_key_id={own_key})")
        key_id = own_key
    endpoint = p.get("endpoint") or None
    if endpoint is not None and not _ENDPOINT_RE.fullmatch(endpoint):
        raise ReportError(f"endpoint: expected a path such as /price, got {endpoint[:40]!r}")
    asset = asset_symbol(p["asset"]) if p.get("asset") else None
    if p.get("asset") and asset is None:
        raise ReportError(f"asset: expected 1-15 letters or digits such as BTC, got {p['asset'][:40]!r}")
    protocol = p["protocol"].strip().lower() if p.get("protocol") else None
    if protocol is not None and protocol not in PROTOCOLS:
        raise ReportError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {p['protocol'][:20]!r}")
    status = None
    if p.get("status"):
        status = whole_number(p["status"])
        if status is None or not 100 <= status <= 599:
            raise ReportError(f"status: expected an HTTP status code 100-599, got {p['status'][:20]!r}")
    raw_limit = p.get("limit", str(DEFAULT_LIMIT))
    limit = whole_number(raw_limit)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise ReportError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")

    filters = ReportFilters(fmt, start, end, granularity, key_id, endpoint, asset, protocol, status, limit, None)
    if p.get("cursor"):
        filters = replace(filters, after=decode_cursor(p["cursor"], filters.fingerprint(), key=cursor_key))
    return filters
