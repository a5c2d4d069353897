"""Usage reports over the real stores: formats, filters, paging, tenant isolation, sync merge.

The LRS app is driven in-process (ASGI) over both stacks: memory + SQLite and Redis +
PostgreSQL. Usage is recorded the way servers record it (Meter.record, then a flush).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from support import stack_env

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.keys import new_key
from trinity_beast.domain.settings import load_settings
from trinity_beast.domain.usage import MINUTE_PREFIX
from trinity_beast.services.reports.filters import MAX_LIMIT
from trinity_beast.services.reports.render import COLUMNS
from trinity_beast.services.runtime import Runtime
from trinity_beast.services.sync import sync_once
from trinity_beast.transports.http.lrs import build_lrs


class Lrs:
    def __init__(self, rt: Runtime, client: httpx.AsyncClient) -> None:
        self.rt = rt
        self.client = client
        self.keys: dict[str, tuple[str, str]] = {}

    def key(self, name: str, tier: str = "subscriber", limit: int | None = None) -> tuple[str, str]:
        key, secret = new_key(name, tier, limit)
        self.rt.db.insert_key(key)
        self.keys[name] = (key.id, secret)
        return key.id, secret

    async def get(self, path: str, secret: str, **params: str) -> httpx.Response:
        return await self.client.get(path, params=params, headers={"Authorization": f"Bearer {secret}"})

    async def record(
        self,
        key_id: str,
        n: int,
        protocol: str = "http",
        status: int = 200,
        asset: str = "BTC",
        minutes_ago: float = 0,
        latency_s: float = 0.002,
    ) -> None:
        when = time.time() - 60 * minutes_ago
        for _ in range(n):
            self.rt.meter.record(key_id, "/price", asset, protocol, status, latency_s, status == 200, now=when)
        await self.rt.meter.flush()


@pytest.fixture(params=["embedded", "production"])
async def lrs(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Lrs]:
    rt = Runtime.create(load_settings(stack_env(request, request.param, tmp_path)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as client:
        yield Lrs(rt, client)
    await rt.cache.close()
    rt.db.close()


def price_rows(body: dict) -> list[dict]:
    """Report requests are metered too (endpoint /reports/usage); these tests count /price."""
    return [r for r in body["data"]["rows"] if r["endpoint"] == "/price"]


def total(body: dict) -> int:
    return sum(r["requests"] for r in price_rows(body))


async def test_a_report_splits_by_protocol_status_and_key_and_survives_sync(lrs: Lrs) -> None:
    admin_id, admin = lrs.key("admin", "admin")
    a, _ = lrs.key("a")
    b, _ = lrs.key("b")
    await lrs.record(a, 5, "http")
    await lrs.record(a, 3, "udp", latency_s=0.004)
    await lrs.record(a, 2, "ws", status=429)
    await lrs.record(b, 4, "http", minutes_ago=3)
    r = await lrs.get("/reports/usage", admin, granularity="minute")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == list(FIELDS) and body["status"].startswith("✅ [LRS]") and body["api_key_id"] == admin_id
    split = {(row["api_key_id"], row["protocol"], row["status"]): row["requests"] for row in price_rows(body)}
    assert split == {(a, "http", 200): 5, (a, "udp", 200): 3, (a, "ws", 429): 2, (b, "http", 200): 4}
    udp = next(row for row in body["data"]["rows"] if row["protocol"] == "udp")
    assert udp["latency_avg_ms"] == 4.0 and udp["latency_max_ms"] == 4.0
    assert body["data"]["paging"]["total"] == 4 and body["data"]["includes_unsynced"] is True

    # Sync moves everything into the database; the report does not change.
    result = await sync_once(lrs.rt.cache, lrs.rt.db, now=time.time() + 120)
    assert result.requests == 14
    assert await lrs.rt.cache.keys(MINUTE_PREFIX) == []
    again = (await lrs.get("/reports/usage", admin, granularity="minute")).json()
    assert price_rows(again) == price_rows(body)
    # Late requests for a synced minute are added, before and after the next sync.
    await lrs.record(a, 2, "http")
    assert total((await lrs.get("/reports/usage", admin, granularity="day")).json()) == 16
    await sync_once(lrs.rt.cache, lrs.rt.db, now=time.time() + 120)
    assert total((await lrs.get("/reports/usage", admin, granularity="month")).json()) == 16
    [[db_total]] = lrs.rt.db.query("SELECT SUM(requests) FROM usage_buckets WHERE endpoint = '/price'")
    assert int(db_total) == 16


async def test_each_key_sees_only_its_own_usage_and_admin_sees_all(lrs: Lrs) -> None:
    _, admin = lrs.key("admin", "admin")
    a, a_secret = lrs.key("a")
    b, _ = lrs.key("b", "partner")
    await lrs.record(a, 3)
    await lrs.record(b, 7)
    mine = (await lrs.get("/reports/usage", a_secret)).json()
    assert {row["api_key_id"] for row in mine["data"]["rows"]} == {a} and total(mine) == 3
    assert mine["data"]["filters"]["api_key_id"] == a
    assert total((await lrs.get("/reports/usage", a_secret, api_key_id=a)).json()) == 3
    refused = await lrs.get("/reports/usage", a_secret, api_key_id=b)
    assert refused.status_code == 403 and refused.json()["error"].startswith("a subscriber key sees only its own usage")
    csv_mine = (await lrs.get("/reports/usage", a_secret, format="csv")).text
    assert b not in csv_mine
    assert total((await lrs.get("/reports/usage", admin)).json()) == 10
    assert total((await lrs.get("/reports/usage", admin, api_key_id=b)).json()) == 7
    for secret in ("tbk_nope_nope", ""):
        r = await lrs.client.get("/reports/usage", headers={"Authorization": f"Bearer {secret}"} if secret else {})
        assert r.status_code == 401 and r.json()["status"].startswith("❌ [LRS]")


@pytest.mark.parametrize(
    "params,error",
    [
        ({"format": "xml"}, "format: expected one of json, csv, tsv, text, got 'xml'"),
        ({"from": "yesterday"}, "from: expected an ISO date or date-time"),
        ({"to": "2026-02-30"}, "to: expected an ISO date or date-time"),
        (
            {"from": "2026-03-03", "to": "2026-03-01"},
            "from (2026-03-03T00:00:00Z) must be before to (2026-03-02T00:00:00Z",
        ),
        (
            {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T09:00:00+00:00"},
            "from (2026-03-02T10:00:00Z) must be before to",
        ),
        (
            {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T10:00:00Z"},
            "from (2026-03-02T10:00:00Z) must be before to",
        ),
        ({"granularity": "week"}, "granularity: expected one of minute, hour, day, month"),
        ({"limit": "0"}, f"limit: expected a whole number from 1 to {MAX_LIMIT}"),
        ({"limit": str(MAX_LIMIT + 1)}, f"limit: expected a whole number from 1 to {MAX_LIMIT}"),
        ({"limit": "ten"}, "limit: expected a whole number"),
        ({"cursor": "garbage"}, "cursor: not a cursor from this report"),
        ({"status": "99"}, "status: expected an HTTP status code 100-599"),
        ({"protocol": "smtp"}, "protocol: expected one of http, udp, ws"),
        ({"asset": "BTC-USD"}, "asset: expected 1-15 letters or digits"),
        ({"api_key_id": "bob"}, "api_key_id: expected a public key id"),
        ({"endpoint": "price"}, "endpoint: expected a path such as /price"),
        ({"colour": "red"}, "unknown parameter 'colour'"),
    ],
)
async def test_bad_filters_answer_400_and_change_nothing(lrs: Lrs, params: dict, error: str) -> None:
    _, admin = lrs.key("admin", "admin")
    r = await lrs.get("/reports/usage", admin, **params)
    assert r.status_code == 400
    body = r.json()
    assert list(body) == list(FIELDS) and body["status"].startswith("❌ [LRS]") and body["data"] is None
    assert body["error"].startswith(error), body["error"]


async def test_formats_parse_back_and_agree(lrs: Lrs) -> None:
    _, admin = lrs.key("admin", "admin")
    a, _ = lrs.key("a")
    await lrs.record(a, 3, "http", asset="BTC,ETH")
    await lrs.record(a, 2, "udp", status=400, asset="-")
    await lrs.record(a, 1, "ws", asset='=HYPERLINK("http://x")', minutes_ago=2)
    rows = (await lrs.get("/reports/usage", admin, granularity="minute", endpoint="/price")).json()["data"]["rows"]
    expected = [[str(row[c]) for c in COLUMNS] for row in rows]

    r = await lrs.get("/reports/usage", admin, granularity="minute", endpoint="/price", format="csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="usage-') and r.headers[
        "content-disposition"
    ].endswith('-minute.csv"')
    assert r.headers["x-total-count"] == "3" and "x-next-cursor" not in r.headers
    assert r.content.decode("utf-8").count("\r\n") == 4  # RFC 4180 line ends
    parsed = list(csv.reader(io.StringIO(r.content.decode("utf-8"), newline="")))
    assert parsed[0] == list(COLUMNS)
    neutral = [[("'" + c) if c[:1] in "=+-@" else c for c in row] for row in expected]
    assert parsed[1:] == neutral
    assert any(c == '\'=HYPERLINK("http://x")' for row in parsed for c in row)
    assert any(c == "'-" for row in parsed for c in row) and any(c == "BTC,ETH" for row in parsed for c in row)

    r = await lrs.get("/reports/usage", admin, granularity="minute", endpoint="/price", format="tsv")
    assert r.headers["content-type"] == "text/tab-separated-values; charset=utf-8"
    lines = r.text.split("\n")
    assert lines[-1] == "" and all(line.count("\t") == len(COLUMNS) - 1 for line in lines[:-1])
    parsed = list(csv.reader(io.StringIO(r.text), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert parsed == [list(COLUMNS), *neutral]

    r = await lrs.get("/reports/usage", admin, granularity="minute", endpoint="/price", format="text")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-disposition"].endswith('.txt"')
    table = r.text.splitlines()
    header, rule, body = table[0], table[1], table[2:5]
    # Every column starts at the same offset on every line, under its header.
    starts = [i for i in range(len(rule)) if rule[i] == "-" and (i == 0 or rule[i - 1] == " ")]
    assert len(starts) == len(COLUMNS)
    for line in (header, *body):
        for s in starts[1:]:
            assert line[s - 2 : s] == "  ", line
    assert [line.split() for line in [header]] == [list(COLUMNS)]
    assert table[-1] == "3 row(s) of 3"


async def test_paging_walks_every_row_once(lrs: Lrs) -> None:
    _, admin = lrs.key("admin", "admin")
    for i, proto in enumerate(("http", "udp", "ws")):
        k, _ = lrs.key(f"k{i}")
        await lrs.record(k, i + 1, proto)
        await lrs.record(k, 1, proto, minutes_ago=5)
    full = (await lrs.get("/reports/usage", admin, granularity="minute", endpoint="/price")).json()["data"]["rows"]
    assert len(full) == 6
    seen, cursor, pages = [], None, 0
    # A fixed `to`: the default (now + 60 s) can tick between the JSON and the CSV request of a page.
    to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    while True:
        params = {
            "granularity": "minute",
            "endpoint": "/price",
            "limit": "4",
            **({"cursor": cursor} if cursor else {"to": to}),
        }
        data = (await lrs.get("/reports/usage", admin, **params)).json()["data"]
        assert data["paging"]["total"] == 6
        seen += data["rows"]
        pages += 1
        cursor = data["paging"]["next_cursor"]
        if cursor is None:
            break
        # Files carry the same paging in headers.
        r = await lrs.get("/reports/usage", admin, format="csv", **params)
        assert r.headers["x-next-cursor"] == cursor and r.headers["x-total-count"] == "6"
    assert pages == 2 and seen == full

    first = (await lrs.get("/reports/usage", admin, granularity="minute", limit="1")).json()["data"]["paging"][
        "next_cursor"
    ]
    body, mac = first.split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    bad_mac = first[:-1] + ("0" if first[-1] != "0" else "1")  # always a different last character
    for bad, why in ((tampered, "not a cursor from this report"), (bad_mac, "not a cursor from this report")):
        r = await lrs.get("/reports/usage", admin, granularity="minute", cursor=bad)
        assert r.status_code == 400 and why in r.json()["error"]
    r = await lrs.get("/reports/usage", admin, granularity="hour", cursor=first)
    assert r.status_code == 400 and "other filters" in r.json()["error"]


async def test_filters_narrow_the_rows(lrs: Lrs) -> None:
    _, admin = lrs.key("admin", "admin")
    a, _ = lrs.key("a")
    await lrs.record(a, 2, "http", asset="BTC,ETH")
    await lrs.record(a, 3, "udp", asset="SOL", status=404)
    await lrs.record(a, 4, "ws", asset="ETH", minutes_ago=60 * 24 * 40)  # a previous month
    await sync_once(lrs.rt.cache, lrs.rt.db, now=time.time() + 120)
    await lrs.record(a, 1, "udp", asset="SOL", status=404)  # unsynced: must filter the same way
    q = lambda **kw: lrs.get("/reports/usage", admin, **kw)  # noqa: E731
    assert total((await q(asset="ETH")).json()) == 2
    assert total((await q(asset="eth", granularity="month", **{"from": "2000-01-01"})).json()) == 6
    assert total((await q(protocol="udp")).json()) == 4
    assert total((await q(status="404")).json()) == 4
    assert total((await q(endpoint="/price")).json()) == 6
    assert total((await q(endpoint="/other")).json()) == 0
    old = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * 40))
    assert total((await q(**{"from": old, "to": old})).json()) == 4
    months = (await q(granularity="month", **{"from": "2000-01-01"})).json()["data"]["rows"]
    assert [r["requests"] for r in months] == [4, 2, 4] and all(r["period"].endswith("-01T00:00:00Z") for r in months)


async def test_usage_me_on_the_lrs(lrs: Lrs) -> None:
    a, secret = lrs.key("a", "subscriber", 10)
    await lrs.record(a, 8)
    lrs.rt.meter._month_known.clear()  # a fresh process: reads the month total from the cache
    r = await lrs.get("/usage/me", secret)
    data = r.json()["data"]
    assert r.status_code == 200 and r.json()["endpoint"] == "/usage/me"
    assert data["api_key_id"] == a and data["tier"] == "subscriber"
    assert (data["monthly_usage"], data["monthly_limit"], data["remaining"], data["usage_pct"]) == (8, 10, 2, 80.0)
    assert data["usage_warning"] == "80% of the monthly limit of 10 prices used"
    assert re.fullmatch(r"\d{4}-\d\d-01T00:00:00Z", data["resets_at"])
    assert r.headers["x-ratelimit-remaining"] == "2" and r.headers["x-ratelimit-limit"] == "10"
    assert (await lrs.client.get("/usage/me")).status_code == 401


async def test_reports_stay_exact_while_a_sync_runs(lrs: Lrs) -> None:
    """A report read while buckets are being claimed, written and deleted never sees one twice or not at all."""
    import asyncio

    _, admin = lrs.key("admin", "admin")
    a, _ = lrs.key("a")
    for minutes_ago in range(1, 13):
        await lrs.record(a, 5, minutes_ago=minutes_ago)

    async def slowly(batch_id: str) -> None:
        await asyncio.sleep(0.01)  # widen the window between commit and delete

    sync = asyncio.create_task(sync_once(lrs.rt.cache, lrs.rt.db, now=time.time() + 120, after_commit=slowly))
    seen = []
    while not sync.done():
        seen.append(total((await lrs.get("/reports/usage", admin, endpoint="/price")).json()))
    assert (await sync).buckets >= 12
    seen.append(total((await lrs.get("/reports/usage", admin, endpoint="/price")).json()))
    assert len(seen) > 3 and set(seen) == {60}


async def test_a_cursor_from_another_keys_report_is_foreign(lrs: Lrs) -> None:
    """An admin's cursor (every key) replayed by a subscriber is a 400, not a page of its own rows:
    the subscriber's report is scoped to its key before the cursor is checked."""
    _, admin = lrs.key("admin", "admin")
    a, a_secret = lrs.key("a")
    b, _ = lrs.key("b", "partner")
    await lrs.record(a, 3)
    await lrs.record(b, 7)
    first = (await lrs.get("/reports/usage", admin, limit="1", granularity="day")).json()
    cursor = first["data"]["paging"]["next_cursor"]
    assert cursor
    replayed = await lrs.get("/reports/usage", a_secret, limit="1", granularity="day", cursor=cursor)
    assert replayed.status_code == 400 and "cursor" in replayed.json()["error"]
    # The admin's own next page still works with it.
    assert (await lrs.get("/reports/usage", admin, limit="1", granularity="day", cursor=cursor)).status_code == 200
