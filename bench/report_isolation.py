"""`/price` latency while the worst allowed usage reports run, against idle, in one run.

Issue 13, probe 1: one tenant's report held the single database connection and another
tenant's `/price` stalled 11 s (SQLite) / 14 s (PostgreSQL). This starts `beast serve --sim`
over a database seeded with years of usage, measures `/price` (20 keys in turn, key cache
1 s, so key lookups keep reaching the database) first idle, then while clients loop the
largest reports the limits allow (months over 100 years, hours over 400 days, minutes over
7 days), and writes both figures into bench/RESULTS.md.

    python bench/report_isolation.py [--seconds 10] [--database-url postgresql://...] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import free_port, start_beast_serve, stop_beast  # noqa: E402
from usage_seed import seed_rows  # noqa: E402

from trinity_beast.domain.keys import new_key  # noqa: E402
from trinity_beast.domain.settings import load_settings  # noqa: E402
from trinity_beast.stores.db import make_database  # noqa: E402

DAY = 86_400
MARK_BEGIN = "<!-- report-isolation:begin -->"
MARK_END = "<!-- report-isolation:end -->"


def worst_reports(now: float) -> list[str]:
    """The largest report of each granularity the default limits allow."""
    end = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return [
        "granularity=month&from=1970-01-01&to=2069-12-31&limit=10000",  # 100 years: BEAST_REPORT_MAX_DAYS_MONTH
        f"granularity=hour&from={end - dt.timedelta(days=399)}&to={end}&limit=10000",
        f"granularity=minute&from={end - dt.timedelta(days=6)}&to={end}&limit=10000",
    ]


def seed(env: dict[str, str], admin_id: str) -> int:
    db = make_database(load_settings(env))
    db.migrate()
    now = int(time.time())
    minute0 = now - now % 60 - 7 * DAY
    day0 = now - now % DAY - 36_000 * DAY
    hour0 = now - now % 3600 - 90 * DAY
    rows = seed_rows(db, "minute", range(minute0, minute0 + 7 * DAY, 60), [admin_id], ["BTC", "ETH"])
    rows += seed_rows(db, "hour", range(hour0, hour0 + 83 * DAY, 3600), [admin_id], ["BTC", "ETH", "SOL"])
    rows += seed_rows(db, "day", range(day0, day0 + 35_900 * DAY, DAY), [admin_id], ["BTC", "ETH"])
    db.close()
    return rows


def price_loop(url: str, secrets: list[str], stop: threading.Event, out: list[float], errors: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        i = 0
        while not stop.is_set():
            secret = secrets[i % len(secrets)]
            i += 1
            started = time.perf_counter()
            r = c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"})
            out.append(time.perf_counter() - started)
            if r.status_code != 200:
                errors.append(r.status_code)


def report_loop(url: str, secret: str, query: str, stop: threading.Event, out: list[tuple[int, float]]) -> None:
    with httpx.Client(base_url=url, timeout=120) as c:
        while not stop.is_set():
            started = time.perf_counter()
            r = c.get(f"/reports/usage?{query}", headers={"Authorization": f"Bearer {secret}"})
            out.append((r.status_code, time.perf_counter() - started))


def measure(url: str, secrets: list[str], seconds: float, reports: list[str], admin: str, lrs: str) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[int] = []
    report_results: list[tuple[int, float]] = []
    threads = [threading.Thread(target=price_loop, args=(url, secrets, stop, latencies, errors))]
    threads += [threading.Thread(target=report_loop, args=(lrs, admin, q, stop, report_results)) for q in reports]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(180)
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "max_ms": ordered[-1] * 1000,
        "non_200": len(errors),
        "reports": len(report_results),
        "report_statuses": sorted({s for s, _ in report_results}),
        "report_max_s": max((d for _, d in report_results), default=0.0),
    }


def run(stack: str, database_url: str | None, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        env = {
            "BEAST_DATA_DIR": str(Path(tmp) / "data"),
            "BEAST_IP_ADDRESS": "127.0.0.1",
            "BEAST_KEY_CACHE_S": "1",
            "BEAST_LPO_PORT": str(free_port()),
            "BEAST_LRS_PORT": str(free_port()),
            "BEAST_LOG_LEVEL": "WARNING",
        }
        if database_url:
            env["DATABASE_URL"] = database_url
        db = make_database(load_settings(env))
        db.migrate()
        keys = [new_key(f"k{i}", "subscriber") for i in range(20)]
        admin_key, admin = new_key("bench admin", "admin")
        for key, _ in [*keys, (admin_key, admin)]:
            db.insert_key(key)
        db.close()
        rows = seed(env, admin_key.id)
        proc = start_beast_serve(env, Path(tmp), ("--sim",))
        try:
            url, lrs = proc.url, f"http://127.0.0.1:{env['BEAST_LRS_PORT']}"
            secrets = [s for _, s in keys]
            deadline = time.time() + 30
            while httpx.get(f"{url}/price?asset=BTC", headers={"Authorization": f"Bearer {admin}"}).status_code != 200:
                assert time.time() < deadline, "no BTC price from the simulator"
                time.sleep(0.2)
            idle = measure(url, secrets, seconds, [], admin, lrs)
            loaded = measure(url, secrets, seconds, worst_reports(time.time()), admin, lrs)
        finally:
            stop_beast(proc)
    return {"stack": stack, "rows": rows, "idle": idle, "loaded": loaded}


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A new database next to `admin_url`'s (never the one it names), dropped afterwards."""
    import pg8000.native

    from trinity_beast.stores.db.postgres import connect_args

    name = f"bench_reports_{uuid.uuid4().hex[:8]}"
    conn = pg8000.native.Connection(**connect_args(admin_url))
    conn.run(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        conn.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


def markdown(results: list[dict], seconds: float) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        MARK_BEGIN,
        "## `/price` while the worst allowed reports run (issue 13, probe 1)",
        "",
        f"`python bench/report_isolation.py --seconds {seconds:g}` on {when}, {os.cpu_count()} cores: `beast serve --sim`,"
        " one client asking `/price?asset=BTC` in a loop with 20 keys in turn (key cache 1 s, so lookups keep"
        " reaching the database), first alone, then while three clients loop the largest reports the default"
        " limits allow (months over 100 years, hours over 400 days, minutes over 7 days). Same run, same server.",
        "",
        "| stack | usage rows | `/price` idle: p50 / p99 / max | with reports: p50 / p99 / max | p99 ratio | non-200 | reports answered (status, slowest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        i, lo = r["idle"], r["loaded"]
        lines.append(
            f"| {r['stack']} | {r['rows']:,} | {i['p50_ms']:.1f} / {i['p99_ms']:.1f} / {i['max_ms']:.1f} ms ({i['requests']}) "
            f"| {lo['p50_ms']:.1f} / {lo['p99_ms']:.1f} / {lo['max_ms']:.1f} ms ({lo['requests']}) "
            f"| {lo['p99_ms'] / i['p99_ms']:.2f} | {i['non_200'] + lo['non_200']} "
            f"| {lo['reports']} ({', '.join(map(str, lo['report_statuses']))}; {lo['report_max_s']:.2f} s) |"
        )
    lines += [
        "",
        "Before the fix (the issue's probe): `/price` stalled 11.2 s on SQLite and 13.9 s on PostgreSQL behind one"
        " report of months from 1970 to 9998, which itself took 457 s (SQLite); that report is now a 400.",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def write(section: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    text = path.read_text()
    if MARK_BEGIN in text:
        before, rest = text.split(MARK_BEGIN, 1)
        after = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = before + section + "\n" + after
    else:
        head, sep, tail = text.partition("\n## Where a goal is missed")
        text = head.rstrip("\n") + "\n\n" + section + ("\n" + sep.lstrip("\n") + tail if sep else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args()
    results = [run("embedded (SQLite)", None, args.seconds)]
    if args.database_url:
        with throwaway_database(args.database_url) as url:
            results.append(run("PostgreSQL", url, args.seconds))
    section = markdown(results, args.seconds)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
