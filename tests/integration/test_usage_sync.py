"""Exactly-once metering across processes: two `beast serve`, other meters, crashing and racing syncs.

Everything runs over one Redis namespace and one PostgreSQL database, as production does.
Syncs run in child processes with their clock moved 2 minutes ahead, so the minute just
served counts as closed without waiting for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import REPO, put_btc, run_beast, stack_env, start_beast_serve, stop_beast

CHILD = str(REPO / "tests" / "integration" / "usage_child.py")


def child(env: dict[str, str], *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    full = {**os.environ, **env}
    if wait:
        return subprocess.run([sys.executable, CHILD, *args], env=full, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(
        [sys.executable, CHILD, *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def report(lrs_url: str, admin: str, **params: str) -> dict[tuple[str, int], int]:
    """Requests per (protocol, status) for /price, from the LRS."""
    r = httpx.get(
        lrs_url + "/reports/usage",
        params={"granularity": "day", "endpoint": "/price", **params},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    out: dict[tuple[str, int], int] = {}
    for row in r.json()["data"]["rows"]:
        out[(row["protocol"], row["status"])] = out.get((row["protocol"], row["status"]), 0) + row["requests"]
    return out


def db_total(env: dict[str, str], key_id: str) -> int:
    from trinity_beast.stores.db.postgres import PostgresDatabase

    db = PostgresDatabase(env["DATABASE_URL"])
    try:
        [[n]] = db.query(
            "SELECT COALESCE(SUM(requests), 0) FROM usage_buckets WHERE api_key_id = :k AND endpoint = '/price'",
            k=key_id,
        )
        return int(n)
    finally:
        db.close()


def wait_for(expected: dict, get: callable, timeout: float = 15) -> dict:
    deadline = time.time() + timeout
    while True:
        got = get()
        if got == expected or time.time() > deadline:
            return got
        time.sleep(0.1)


def test_n_requests_from_many_processes_survive_crashed_and_concurrent_syncs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = stack_env(request, "production", tmp_path)
    env.update({"BEAST_SYNC_EVERY_S": "3600", "BEAST_FEEDS": "false", "BEAST_PREWARM": "false"})
    a = start_beast_serve(env, cwd=tmp_path)
    b = start_beast_serve(env, cwd=tmp_path)
    try:
        admin = next(line.split()[1] for line in a.first_output.splitlines() if line.strip().startswith("key:"))
        created = run_beast(["keys", "create", "--name", "load", "--tier", "subscriber", "--json"], env)
        key = json.loads(created.stdout)
        env["TEST_KEY_ID"] = key["id"]
        put_btc(env)
        lrs = f"http://127.0.0.1:{a.env['BEAST_LRS_PORT']}"
        auth = {"Authorization": f"Bearer {key['key']}"}

        # HTTP through both servers: 200s and 400s. UDP and WS counts come from a third process.
        with httpx.Client(timeout=10) as c:
            for server, n in ((a, 30), (b, 20)):
                deadline = time.time() + 5
                while c.get(server.url + "/price?asset=BTC", headers=auth).status_code != 200:
                    assert time.time() < deadline, "BTC never served"
                    time.sleep(0.05)
                for _ in range(n - 1):
                    assert c.get(server.url + "/price?asset=BTC", headers=auth).status_code == 200
            for _ in range(5):
                assert c.get(b.url + "/price?asset=B!", headers=auth).status_code == 400
        for proto, n in (("udp", 7), ("ws", 4)):
            assert child(env, "meter", proto, str(n)).returncode == 0
        expected = {("http", 200): 50, ("http", 400): 5, ("udp", 200): 7, ("ws", 200): 4}
        assert wait_for(expected, lambda: report(lrs, admin)) == expected  # the cache, within seconds
        n = sum(expected.values())

        # A sync killed between its commit and its cache delete: the report stays exact...
        killed = child(env, "sync", "--kill-after-commit", "--now-offset", "120")
        assert killed.returncode == -9 and "dying before the delete" in killed.stdout, killed.stderr
        assert report(lrs, admin) == expected
        assert 0 < db_total(env, key["id"]) <= n
        # ...and the rerun finishes the claimed bucket without writing it twice.
        rerun = child(env, "sync", "--now-offset", "120")
        assert rerun.returncode == 0, rerun.stderr
        assert report(lrs, admin) == expected
        assert db_total(env, key["id"]) == n

        # Two syncs at once over many fresh buckets: each bucket is written exactly once.
        for minutes_ago in range(2, 8):
            assert child(env, "meter", "ws", "10", str(minutes_ago)).returncode == 0
        expected[("ws", 200)] += 60
        racers = [
            child(env, "sync", "--now-offset", "120", "--sleep-before-delete", "0.05", wait=False) for _ in range(2)
        ]
        outputs = [p.communicate(timeout=60) for p in racers]
        assert [p.returncode for p in racers] == [0, 0], outputs
        assert sum(int(out.split()[1]) for out, _ in outputs) >= 60, outputs  # plus metered report calls
        assert report(lrs, admin) == expected
        assert db_total(env, key["id"]) == n + 60

        # The month total that drives limits counted every billable request once.
        # (each process refreshes it from the cache on every flush, so poll briefly).
        billable = 50 + 7 + 4 + 60
        usage_me = lambda: httpx.get(a.url + "/usage/me", headers=auth).json()["data"]["monthly_usage"]  # noqa: E731
        assert wait_for(billable, usage_me) == billable
    finally:
        codes = [stop_beast(p) for p in (a, b)]
    assert [code for code, _ in codes] == [0, 0], codes
    # Clean stops flushed their /usage/me and report counts too; nothing is left half-synced.
    assert child(env, "sync", "--now-offset", "120").returncode == 0
    assert db_total(env, key["id"]) == n + 60
