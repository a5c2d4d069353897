"""Monthly limits over real HTTP: a subscriber crosses 80 %, 90 %, 100 % and is refused; a partner never is."""

from __future__ import annotations

import re
import time
from decimal import Decimal

from support import InProcessServer

from trinity_beast.domain.tick import Tick


def serve_btc(server: InProcessServer) -> None:
    now = time.time()
    server.call(server.rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now, now)))
    deadline = time.time() + 5
    with server.client() as c:
        while c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {server.admin_key}"}).status_code != 200:
            assert time.time() < deadline
            time.sleep(0.02)


def test_a_subscriber_is_warned_at_80_and_90_percent_and_refused_past_100(server: InProcessServer) -> None:
    serve_btc(server)
    _, secret = server.create_key("subscriber", monthly_limit=10)
    auth = {"Authorization": f"Bearer {secret}"}
    warnings = {}
    with server.client() as c:
        for i in range(1, 11):
            r = c.get("/price?asset=BTC", headers=auth)
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            assert (data["monthly_usage"], data["monthly_limit"], data["usage_pct"]) == (i, 10, float(i * 10))
            assert r.headers["x-ratelimit-remaining"] == str(10 - i)
            warnings[i] = data["usage_warning"]
        assert [warnings[i] for i in range(1, 8)] == [""] * 7  # the seed's "" when there is nothing to warn about
        assert warnings[8] == "80% of the monthly limit of 10 requests used"
        assert warnings[9] == "90% of the monthly limit of 10 requests used"
        assert warnings[10] == "monthly limit of 10 requests reached"
        for _ in range(3):
            r = c.get("/price?asset=BTC", headers=auth)
            body = r.json()
            assert r.status_code == 429 and body["status"].startswith("❌ [LPO]")
            assert body["error"].startswith("monthly limit of 10 requests reached; the limit resets at ")
            assert re.search(r"\d{4}-\d\d-01T00:00:00Z$", body["error"])
            assert body["data"]["monthly_usage"] == 10 and r.headers["x-ratelimit-remaining"] == "0"
        # Refusals are not billed, and /usage/me still answers (reading your usage never uses it up).
        me = c.get("/usage/me", headers=auth)
        assert me.status_code == 200
        data = me.json()["data"]
        assert (data["monthly_usage"], data["remaining"], data["usage_pct"]) == (10, 0, 100.0)
        assert data["usage_warning"] == "monthly limit of 10 requests reached"
        assert int(me.headers["x-ratelimit-reset"]) > time.time()


def test_a_partner_is_never_limited(server: InProcessServer) -> None:
    serve_btc(server)
    _, secret = server.create_key("partner", name="aws partner")
    auth = {"Authorization": f"Bearer {secret}"}
    with server.client() as c:
        for i in range(1, 41):
            r = c.get("/price?asset=BTC", headers=auth)
            assert r.status_code == 200
            data = r.json()["data"]
            assert (data["monthly_usage"], data["monthly_limit"], data["usage_pct"], data["usage_warning"]) == (
                i,
                0,
                0.0,
                "",
            )
            assert r.headers["x-ratelimit-limit"] == "unlimited" and r.headers["x-ratelimit-remaining"] == "unlimited"
        me = c.get("/usage/me", headers=auth).json()["data"]
        assert (me["tier"], me["monthly_limit"], me["remaining"], me["monthly_usage"]) == ("partner", 0, None, 40)


def test_a_restart_does_not_give_a_subscriber_a_fresh_month(tmp_path) -> None:
    """The embedded cache dies with the process: a clean stop syncs every bucket to SQLite and
    the next start seeds the month's totals from it, so the limit still holds."""
    import json

    import httpx
    from support import UNREACHABLE_EXCHANGES, run_beast, start_beast_serve, stop_beast

    env = {"BEAST_DATA_DIR": str(tmp_path / "data"), "BEAST_PREWARM": "false", **UNREACHABLE_EXCHANGES}
    made = run_beast(["keys", "create", "--name", "s", "--tier", "subscriber", "--monthly-limit", "3", "--json"], env)
    auth = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}

    def ask(url: str) -> httpx.Response:
        deadline = time.time() + 10
        while True:  # the simulator's first prices arrive within a moment of start
            r = httpx.get(url + "/price?asset=BTC", headers=auth)
            if r.status_code != 404 or time.time() > deadline:
                return r
            time.sleep(0.05)

    p = start_beast_serve(env, cwd=tmp_path, args=("--sim",))
    try:
        assert [ask(p.url).status_code for _ in range(3)] == [200, 200, 200]
        assert ask(p.url).status_code == 429
    finally:
        code, err = stop_beast(p)
    assert code == 0, err

    p = start_beast_serve(env, cwd=tmp_path, args=("--sim",))
    try:
        r = ask(p.url)
        assert r.status_code == 429, r.text
        assert r.json()["data"]["monthly_usage"] == 3
    finally:
        stop_beast(p)
