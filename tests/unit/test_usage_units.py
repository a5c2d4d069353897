"""Pure pieces of metering and reports: no servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import load_settings
from trinity_beast.domain.usage import Counts, Group, parse_bucket
from trinity_beast.services.reports.cursor import decode_cursor, encode_cursor
from trinity_beast.services.reports.errors import ReportError
from trinity_beast.services.reports.filters import month_edges, parse_filters
from trinity_beast.services.reports.policy import ReportLimits
from trinity_beast.services.reports.render import neutralize

LIMITS = ReportLimits()
KEY = b"k" * 32  # a deployment's key (each deployment makes its own)


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp())


def test_month_edges_follow_the_calendar() -> None:
    edges = month_edges(ts("2024-01-15T00:00:00"), ts("2024-03-01T00:00:01"))
    assert edges == (ts("2024-01-01T00:00:00"), ts("2024-02-01T00:00:00"), ts("2024-03-01T00:00:00"))
    assert month_edges(ts("2024-12-31T00:00:00"), ts("2025-01-02T00:00:00"))[-1] == ts("2025-01-01T00:00:00")


def test_dates_and_defaults() -> None:
    now = ts("2026-11-23T15:10:00")
    f = parse_filters([], now, LIMITS, KEY)
    assert (f.start, f.end, f.format, f.granularity, f.limit) == (
        ts("2026-11-01T00:00:00"),
        now + 60,
        "json",
        "hour",
        1000,
    )
    f = parse_filters([("from", "2026-11-02"), ("to", "2026-11-02")], now, LIMITS, KEY)
    assert (f.start, f.end) == (ts("2026-11-02T00:00:00"), ts("2026-11-03T00:00:00"))
    f = parse_filters([("from", "2026-11-02T10:00:00+02:00"), ("to", "2026-11-02T10:30")], now, LIMITS, KEY)
    assert (f.start, f.end) == (ts("2026-11-02T08:00:00"), ts("2026-11-02T10:30:00"))
    with pytest.raises(ReportError, match="format: give it once"):
        parse_filters([("format", "csv"), ("format", "tsv")], now, LIMITS, KEY)


def test_a_cursor_round_trips_and_rejects_edits() -> None:
    after = (60, "ak_1", "/price", "BTC", "http", 200)
    cursor = encode_cursor(after, "fp", key=KEY)
    assert decode_cursor(cursor, "fp", key=KEY) == after
    with pytest.raises(ReportError, match="other filters"):
        decode_cursor(cursor, "other", key=KEY)
    for bad in ("", ".", "x.y", cursor + "0", cursor.replace(".", ".0", 1), "e30." + cursor.split(".")[1]):
        with pytest.raises(ReportError):
            decode_cursor(bad, "fp", key=KEY)


@pytest.mark.parametrize(
    "value,shown",
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-", "'-"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("BTC", "BTC"),
        (200, 200),
    ],
)
def test_formula_cells_are_neutralised(value: object, shown: object) -> None:
    assert neutralize(value) == shown


def test_parse_bucket_adds_fields_and_skips_junk() -> None:
    fields = {
        "ak_1|/price|BTC|http|200|n": 3,
        "ak_1|/price|BTC|http|200|us": 900,
        "ak_1|/price|BTC|http|200|max": 500,
        "junk": 1,
        "ak_1|/price|BTC|http|abc|n": 1,
        "ak_1|/price|BTC|udp|200|max": 7,
    }
    assert parse_bucket(fields) == {Group("ak_1", "/price", "BTC", "http", 200): Counts(3, 900, 500)}


def test_new_settings_are_validated() -> None:
    s = load_settings({"BEAST_SYNC_EVERY_S": "30", "BEAST_USAGE_MINUTE_DAYS": "2", "BEAST_USAGE_HOUR_DAYS": "30"})
    assert (s.sync_every_s, s.usage_minute_days, s.usage_hour_days) == (30.0, 2.0, 30.0)
    with pytest.raises(ConfigError, match="BEAST_USAGE_HOUR_DAYS: must be at least BEAST_USAGE_MINUTE_DAYS"):
        load_settings({"BEAST_USAGE_MINUTE_DAYS": "10", "BEAST_USAGE_HOUR_DAYS": "5"})
    with pytest.raises(ConfigError, match="BEAST_USAGE_MINUTE_DAYS: expected a positive number of days"):
        load_settings({"BEAST_USAGE_MINUTE_DAYS": "0"})


def test_billing_settings_are_validated() -> None:
    s = load_settings({})
    assert (s.usage_offline_allowance, s.ws_max_pushes_per_s, s.rest_min_interval_s) == (100, 10.0, 1.0)
    s = load_settings(
        {"BEAST_USAGE_OFFLINE_ALLOWANCE": "0", "BEAST_WS_MAX_PUSHES_PER_S": "2.5", "BEAST_REST_MIN_INTERVAL_S": "5"}
    )
    assert (s.usage_offline_allowance, s.ws_max_pushes_per_s, s.rest_min_interval_s) == (0, 2.5, 5.0)
    for name, value, message in (
        ("BEAST_USAGE_OFFLINE_ALLOWANCE", "-1", "0 = refuse while the cache is unreachable"),
        ("BEAST_USAGE_OFFLINE_ALLOWANCE", "ten", "whole number of units"),
        ("BEAST_WS_MAX_PUSHES_PER_S", "0", "positive number of pushes per second"),
        ("BEAST_REST_MIN_INTERVAL_S", "nan", "positive number of seconds"),
    ):
        with pytest.raises(ConfigError, match=f"{name}: .*{message}"):
            load_settings({name: value})


def test_later_pages_keep_the_range_of_the_first_even_when_now_moves() -> None:
    from trinity_beast.services.reports.filters import parse_filters

    first = parse_filters([("granularity", "minute")], 1_800_000_000, LIMITS, KEY)
    cursor = encode_cursor(
        (0, "ak_1", "/price", "BTC", "http", 200), first.fingerprint(), (first.start, first.end), key=KEY
    )
    later = parse_filters([("granularity", "minute"), ("cursor", cursor)], 1_800_000_000 + 3600, LIMITS, KEY)
    assert (later.start, later.end) == (first.start, first.end)
    assert later.after == (0, "ak_1", "/price", "BTC", "http", 200)


async def test_a_month_total_never_goes_down_in_a_process() -> None:
    """A stale or lost cache total (a read racing a flush, a Redis restart) must not hand a key
    back usage it already spent."""
    from trinity_beast.domain.usage import MONTH_PREFIX, month_of
    from trinity_beast.services.meter import Meter
    from trinity_beast.stores.cache import MemoryCache

    cache = MemoryCache()
    meter = Meter(cache, clock=lambda: 1_800_000_000.0)
    month = month_of(1_800_000_000.0)
    await meter.load("ak_1")
    for _ in range(5):
        meter.record("ak_1", "/price", "BTC", "http", 200, 0.001, True)
    await meter.flush()
    assert meter.quota("ak_1", 0).used == 5
    await cache.delete(f"{MONTH_PREFIX}{month}")  # the cache loses the total
    meter.record("ak_1", "/price", "BTC", "http", 200, 0.001, True)
    await meter.flush()  # the cache now says 1
    await meter.load("ak_1")  # and a reload reads 1
    assert meter.quota("ak_1", 0).used == 5  # still at least what this process saw


def test_usage_keys_share_one_cluster_slot() -> None:
    """Cluster-mode Redis (MemoryDB) refuses multi-key operations across slots: the flush
    and the claim rename touch several usage keys, so all of them hash to one slot."""
    from redis.crc import key_slot

    from trinity_beast.domain.usage import CLAIM_PREFIX, MINUTE_PREFIX, MONTH_PREFIX, OWN_PREFIX

    keys = [
        f"beast:{MINUTE_PREFIX}29000000",
        f"beast:{CLAIM_PREFIX}29000000:ab12",
        f"beast:{MONTH_PREFIX}2026-11",
        f"beast:{OWN_PREFIX}2026-11",
        "beast:{usage}:marker",
        "beast:{usage}:claims",
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1
