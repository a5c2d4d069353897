"""Issue 13, probe 1: no report can hurt another tenant.

`/reports/usage?granularity=month&from=1970-01-01&to=9998-12-30` took 457 s on SQLite (a CASE
over 96,000 month edges per row) while holding the one database connection: another tenant's
`/price` stalled 11 s. Now a report past the range or bucket limit is a 400 naming the limit,
months are bucketed by the database's date functions, each report query runs under a
statement timeout, and reports read through their own connection and thread. Real servers on
loopback over both stacks (memory + SQLite, Redis + PostgreSQL).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from support import InProcessServer, in_process_server, stack_env
from usage_seed import seed_rows

from trinity_beast.domain.tick import Tick

DAY = 86_400


def start(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str, **extra: str
) -> AbstractContextManager[InProcessServer]:
    env = stack_env(request, stack, tmp_path) | {"BEAST_FEEDS": "false", "BEAST_PREWARM": "false", **extra}
    return in_process_server(env, lrs=True)


@pytest.fixture(params=["embedded", "production"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with start(request, tmp_path, request.param) as server:
        yield server


def lrs_get(srv: InProcessServer, query: str, secret: str | None = None, timeout: float = 60) -> httpx.Response:
    assert srv.lrs_url is not None
    headers = {"Authorization": f"Bearer {secret or srv.admin_key}"}
    return httpx.get(f"{srv.lrs_url}/reports/usage?{query}", headers=headers, timeout=timeout)


@pytest.mark.parametrize(
    "query,limit",
    [
        ("granularity=month&from=1970-01-01&to=9998-12-30", "BEAST_REPORT_MAX_DAYS_MONTH"),  # the probe
        ("granularity=minute&from=2026-01-01&to=2026-01-08", "BEAST_REPORT_MAX_DAYS_MINUTE"),
        ("granularity=hour&from=2025-01-01&to=2026-03-01", "BEAST_REPORT_MAX_DAYS_HOUR"),
        ("granularity=day&from=1990-01-01&to=2026-01-01", "BEAST_REPORT_MAX_DAYS_DAY"),
        ("from=1970-01-01", "BEAST_REPORT_MAX_DAYS_HOUR"),  # hour is the default granularity
    ],
)
def test_a_report_past_its_range_limit_is_a_400_naming_the_limit(srv: InProcessServer, query: str, limit: str) -> None:
    started = time.monotonic()
    r = lrs_get(srv, query)
    assert r.status_code == 400 and limit in r.json()["error"] and r.json()["error"].startswith("range:"), r.text
    assert time.monotonic() - started < 10  # refused before any work


def test_the_bucket_cap_is_a_setting(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with start(request, tmp_path, "embedded", BEAST_REPORT_MAX_BUCKETS="100") as srv:
        assert lrs_get(srv, "granularity=hour&from=2026-01-01&to=2026-01-04").status_code == 200  # 72 hours
        r = lrs_get(srv, "granularity=hour&from=2026-01-01&to=2026-01-05")  # 120 hours
        assert r.status_code == 400 and "at most 100 per request (limit BEAST_REPORT_MAX_BUCKETS)" in r.json()["error"]
        # Without from, the default range (this month so far) shrinks to what the limits allow.
        r = lrs_get(srv, "granularity=minute")
        assert r.status_code == 200 and r.json()["data"]["filters"]["from"] >= time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 101 * 60)
        ), r.text


def test_the_worst_allowed_month_report_is_summed_in_sql(srv: InProcessServer) -> None:
    """100 years of day rows (36,500 days x 2 assets) summed into 1,200 months."""
    first = 157_766_400  # 1975-01-01
    n = seed_rows(srv.rt.db, "day", range(first, first + 36_500 * DAY, DAY), [srv.admin_id], ["BTC", "ETH"])
    started = time.monotonic()
    r = lrs_get(srv, "granularity=month&from=1975-01-01&to=2074-12-31&format=json&limit=10000")
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    rows = [row for row in r.json()["data"]["rows"] if row["endpoint"] == "/price"]
    assert sum(row["requests"] for row in rows) == 3 * n
    assert len({row["period"] for row in rows}) == 1200 and all(row["period"].endswith("-01T00:00:00Z") for row in rows)
    assert elapsed < 60, elapsed  # was quadratic: 457 s for the probe's range on SQLite


def test_a_report_past_the_statement_timeout_is_stopped(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    for stack in ("embedded", "production"):
        with start(request, tmp_path / stack, stack, BEAST_REPORT_TIMEOUT_S="0.001") as srv:
            seed_rows(srv.rt.db, "day", range(0, 3000 * DAY, DAY), [srv.admin_id], [f"A{i}" for i in range(20)])
            r = lrs_get(srv, "granularity=month&from=1970-01-01&to=1978-01-01")
            assert r.status_code == 503, r.text
            assert "longer than the 0.001-second limit (BEAST_REPORT_TIMEOUT_S)" in r.json()["error"]
            me = httpx.get(f"{srv.lrs_url}/usage/me", headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=30)
            assert me.status_code == 200  # the server, its database connections and their locks are fine


def test_prices_and_key_lookups_never_wait_behind_a_report(srv: InProcessServer) -> None:
    """While a report holds its database connection (as a long query does), keys this process
    has never seen are looked up and priced at once, and the report answers afterwards."""
    now = time.time()
    srv.call(
        srv.rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now + 3600, now + 3600))
    )
    reader = srv.rt.report_reader
    assert reader.db is not srv.rt.db  # its own connection and lock
    held, release = threading.Event(), threading.Event()

    def long_report() -> None:
        with reader.db._lock:  # what a long-running report statement holds
            held.set()
            release.wait(60)

    holder = threading.Thread(target=long_report, daemon=True)
    holder.start()
    assert held.wait(10)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lrs_get, srv, "granularity=day")
        try:
            for _ in range(5):
                _, fresh = srv.create_key("subscriber")  # never seen: a database lookup on the main connection
                started = time.monotonic()
                r = httpx.get(f"{srv.url}/price?asset=BTC", headers={"Authorization": f"Bearer {fresh}"}, timeout=30)
                assert r.status_code == 200 and time.monotonic() - started < 5, r.text
                me = httpx.get(f"{srv.url}/usage/me", headers={"Authorization": f"Bearer {fresh}"}, timeout=30)
                assert me.status_code == 200
            assert not pending.done()  # the report is still waiting for its connection
        finally:
            release.set()
        assert pending.result(60).status_code == 200
