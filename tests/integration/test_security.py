"""Security: secrets only as hashes and never logged, tenant isolation, admin-only routes,
revocation on every protocol within seconds, per-client WebSocket limits. (Constant-time
comparisons are checked in tests/unit/test_constant_time.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import in_process_server, run_beast, stack_env, start_beast_serve, stop_beast
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.domain.keys import new_key
from trinity_beast.domain.settings import load_settings
from trinity_beast.services.auth import KeyRing
from trinity_beast.services.runtime import Runtime
from trinity_beast.stores.cache import MemoryCache
from trinity_beast.stores.db import Database
from trinity_beast.transports.http.lrs import build_lrs
from trinity_beast.transports.http.partners import ROUTES
from trinity_beast.transports.udp.lrs import UdpReportServer

SECRET_RE = re.compile(r"tbk_[A-Za-z0-9_\-]{20,}")


# ---- secrets at rest and in logs ---------------------------------------------------------------


def all_text(db: Database) -> str:
    """Every value of every row of every table, as one string."""
    if db.dialect == "sqlite":
        tables = [r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [
            r[0] for r in db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        ]
    assert "api_keys" in tables
    return "\n".join(repr(row) for table in tables for row in db.query(f'SELECT * FROM "{table}"'))


def test_secrets_are_stored_only_as_hashes(database: Database) -> None:
    database.migrate()
    secrets = []
    for tier in ("partner", "subscriber", "admin"):
        key, secret = new_key(f"a {tier}", tier)
        database.insert_key(key)
        secrets.append((key, secret))
    ring = KeyRing(database)
    dump = all_text(database)
    for key, secret in secrets:
        assert ring.lookup(secret) == key  # the hash finds it...
        assert key.secret_hash in dump
        assert secret not in dump and secret.removeprefix("tbk_") not in dump  # ...the secret is nowhere
    assert not SECRET_RE.search(dump)


def udp_ask(port: int, message: dict) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        # padded: large enough to carry a stranger's error under the anti-amplification rule
        sock.sendto(json.dumps(message).encode() + b" " * 200, ("127.0.0.1", port))
        return json.loads(sock.recvfrom(65536)[0])


def test_revoked_keys_are_refused_on_every_protocol_within_seconds_and_no_secret_is_logged(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """One full session at DEBUG: every protocol, the key in headers and in queries, bad keys,
    a revocation. The key stops working everywhere within BEAST_KEY_CACHE_S (5 s) and the WS
    re-check period (5 s); no secret appears in any log line."""
    env = stack_env(request, "production", tmp_path)
    env.update({"BEAST_FEEDS": "false", "BEAST_PREWARM": "false", "BEAST_LOG_LEVEL": "DEBUG"})
    proc = start_beast_serve(env, cwd=tmp_path)
    admin = re.search(r"key: (tbk_\S+)", proc.first_output).group(1)  # type: ignore[union-attr]
    made = json.loads(run_beast(["keys", "create", "--name", "victim", "--tier", "subscriber", "--json"], env).stdout)
    key_id, secret = made["id"], made["key"]
    lpo, lrs = proc.url, f"http://127.0.0.1:{proc.env['BEAST_LRS_PORT']}"
    lpo_udp, lrs_udp = int(proc.env["BEAST_LPO_UDP_PORT"]), int(proc.env["BEAST_LRS_UDP_PORT"])
    bearer = {"Authorization": f"Bearer {secret}"}

    checks: dict[str, Callable[[], int]] = {
        "http /price": lambda: httpx.get(f"{lpo}/price?asset=BTC", headers=bearer, timeout=10).status_code,
        "http /price ?api_key": lambda: httpx.get(f"{lpo}/price?asset=BTC&api_key={secret}", timeout=10).status_code,
        "http /usage/me (LPO)": lambda: httpx.get(f"{lpo}/usage/me", headers=bearer, timeout=10).status_code,
        "http /reports/usage": lambda: (
            httpx.get(f"{lrs}/reports/usage?format=csv", headers=bearer, timeout=10).status_code
        ),
        "http /usage/me (LRS)": lambda: httpx.get(f"{lrs}/usage/me?api_key={secret}", timeout=10).status_code,
        "udp price": lambda: udp_ask(lpo_udp, {"asset": "BTC", "api_key": secret})["status_code"],
        "udp report": lambda: udp_ask(lrs_udp, {"report": "usage", "api_key": secret})["status_code"],
    }
    try:
        for name, check in checks.items():
            assert check() in (200, 404), name  # accepted (404: no BTC price held, after auth)
        for bad in ("tbk_" + "x" * 43, "not-a-key", secret[:-2]):
            assert httpx.get(f"{lpo}/price?asset=BTC&api_key={bad}", timeout=10).status_code == 401

        async def session() -> dict[str, float]:
            url = lpo.replace("http://", "ws://") + "/ws/prices"
            async with (
                connect(f"{url}?api_key={secret}") as by_query,
                connect(url, additional_headers=bearer) as by_header,
            ):
                for ws in (by_query, by_header):
                    await ws.send('{"subscribe": ["BTC"]}')
                    assert json.loads(await ws.recv())["status_code"] == 200
                revoked = run_beast(["keys", "revoke", key_id], env)
                assert revoked.returncode == 0, revoked.stderr
                t0 = time.time()
                refused_after: dict[str, float] = {}
                closed = 0
                while len(refused_after) < len(checks) + 2:
                    assert time.time() - t0 < 15, f"still accepted after 15 s: {set(checks) - set(refused_after)}"
                    for name, check in checks.items():
                        if name not in refused_after and await asyncio.to_thread(check) == 401:
                            refused_after[name] = time.time() - t0
                    for n, ws in enumerate((by_query, by_header)):
                        if f"ws {n}" not in refused_after:
                            try:
                                await asyncio.wait_for(ws.recv(), 0.05)
                            except TimeoutError:
                                pass
                            except ConnectionClosed as exc:
                                assert (
                                    exc.rcvd is not None
                                    and exc.rcvd.code == 1008
                                    and exc.rcvd.reason == "API key revoked"
                                )
                                refused_after[f"ws {n}"] = time.time() - t0
                                closed += 1
                    await asyncio.sleep(0.1)
                async with connect(f"{url}?api_key={secret}") as again:
                    with pytest.raises(ConnectionClosed):
                        await again.recv()
                return refused_after

        refused_after = asyncio.run(session())
        assert max(refused_after.values()) < 7.0, refused_after  # 5 s key cache / 5 s WS re-check, plus polling
        assert (
            httpx.get(f"{lrs}/reports/usage", headers={"Authorization": f"Bearer {admin}"}, timeout=10).status_code
            == 200
        )
    finally:
        code, stderr = stop_beast(proc)
    stdout = (tmp_path / proc.stderr_path.name.replace(".err", ".out")).read_text()
    banner_end = stdout.index("try: curl")
    logged = stderr + stdout[stdout.index("\n", banner_end) :]
    assert code == 0
    assert "DEBUG" in stderr and len(stderr.splitlines()) > 5  # the session was logged, at DEBUG
    for value in (secret, admin, secret.removeprefix("tbk_"), admin.removeprefix("tbk_")):
        assert value not in logged
    assert not SECRET_RE.search(logged), SECRET_RE.search(logged)


# ---- tenant isolation and admin-only routes ----------------------------------------------------


@pytest.fixture
async def lrs_runtime(database: Database, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.create(load_settings({"BEAST_DATA_DIR": str(tmp_path)}), db=database, cache=MemoryCache())
    await rt.start()
    yield rt
    await rt.stop()


async def test_tenant_isolation_on_every_report_format_filter_and_protocol(lrs_runtime: Runtime) -> None:
    rt = lrs_runtime
    tenants = {}
    for name in ("alice", "bob"):
        key, secret = new_key(name, "subscriber", 1000)
        rt.db.insert_key(key)
        tenants[name] = (key.id, secret)
    admin, admin_secret = new_key("admin", "admin")
    rt.db.insert_key(admin)
    for key_id, _ in tenants.values():
        for asset, protocol in (("BTC", "http"), ("ETH", "udp"), ("BTC,ETH", "ws")):
            rt.meter.record(key_id, "/price", asset, protocol, 200, 0.001, True)
    await rt.meter.flush()
    alice_id, alice = tenants["alice"]
    bob_id, _ = tenants["bob"]
    filters = [
        {},
        {"asset": "BTC"},
        {"protocol": "udp"},
        {"endpoint": "/price"},
        {"status": "200"},
        {"granularity": "minute"},
        {"api_key_id": alice_id},
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as c:
        for extra in filters:
            for fmt in ("json", "csv", "tsv", "text"):
                r = await c.get(
                    "/reports/usage", params={"format": fmt, **extra}, headers={"Authorization": f"Bearer {alice}"}
                )
                assert r.status_code == 200, (fmt, extra, r.text)
                assert bob_id not in r.text and (alice_id in r.text or extra.get("protocol") == "ws"), (fmt, extra)
        for fmt in ("json", "csv"):
            r = await c.get(
                "/reports/usage",
                params={"format": fmt, "api_key_id": bob_id},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert r.status_code == 403 and bob_id not in r.json()["data"].__repr__() if r.json()["data"] else True
        everyone = await c.get("/reports/usage", headers={"Authorization": f"Bearer {admin_secret}"})
        assert alice_id in everyone.text and bob_id in everyone.text
    udp = UdpReportServer(rt)
    status, body, _ = await udp.answer(json.dumps({"report": "usage", "api_key": alice}).encode())
    assert status == 200 and bob_id not in body.decode() and json.loads(body)["data"]
    status, body, _ = await udp.answer(json.dumps({"report": "usage", "api_key": alice, "api_key_id": bob_id}).encode())
    assert status == 403


async def test_admin_only_routes_refuse_every_other_key(lrs_runtime: Runtime) -> None:
    rt = lrs_runtime
    secrets: dict[str, str] = {}
    for tier in ("subscriber", "partner", "admin"):
        key, secret = new_key(tier, tier)
        rt.db.insert_key(key)
        secrets[tier] = secret
    routes = [(r.method, r.label.replace("{id}", "pt_0123456789abcdef")) for r in ROUTES if r.admin]
    routes += [("GET", "/admin/api/session"), ("GET", "/admin/api/usage"), ("GET", "/admin/api/feeds")]
    assert len(routes) >= 10
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as c:
        for method, path in routes:
            kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "DELETE") else {}
            if method == "DELETE":
                kwargs = {"content": b"{}", "headers": {"content-type": "application/json"}}
            assert (await c.request(method, path, **kwargs)).status_code == 401, (method, path)
            for tier in ("subscriber", "partner"):
                headers = {"Authorization": f"Bearer {secrets[tier]}", **kwargs.pop("headers", {})}
                r = await c.request(method, path, headers=headers, **kwargs)
                assert r.status_code == 403, (tier, method, path, r.text)
                assert "admin" in r.json()["error"]
            if method == "GET":
                r = await c.get(path, headers={"Authorization": f"Bearer {secrets['admin']}"})
                assert r.status_code not in (401, 403), (path, r.text)


# ---- limits per client -------------------------------------------------------------------------


async def test_websocket_connections_are_limited_per_key_and_per_address(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {**stack_env(request, "embedded", tmp_path), "BEAST_WS_MAX_PER_KEY": "3", "BEAST_WS_MAX_PER_IP": "5"}
    with in_process_server(env) as srv:
        url = srv.url.replace("http://", "ws://") + "/ws/prices?api_key="
        _, a = srv.create_key("subscriber")
        _, b = srv.create_key("subscriber")
        _, partner = srv.create_key("partner")

        async def refused(secret: str) -> str:
            async with connect(url + secret) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            return closed.value.rcvd.reason

        held = [await connect(url + a) for _ in range(3)]
        for ws in held:
            await ws.send('{"ping": 1}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
        assert await refused(a) == "too many connections for this key: at most 3 open at once"
        held += [await connect(url + b) for _ in range(2)]  # five from this address now
        assert (await refused(b)).startswith("too many connections from 127.0.0.1: at most 5 open at once")
        partners = [await connect(url + partner) for _ in range(6)]  # partners are never throttled
        for ws in partners:
            await ws.send('{"ping": 1}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
        await held.pop(0).close()
        deadline = time.time() + 30  # the server notices the close on its own loop: wait for it to free the slot
        while len(srv.app.hub.clients) > len(held) + len(partners) and time.time() < deadline:
            await asyncio.sleep(0.02)
        again = await connect(url + a)  # a slot freed: the key may connect again
        await again.send('{"ping": 1}')
        assert json.loads(await again.recv()) == {"type": "pong"}
        assert srv.app.hub.stats()["refused_limit"] == 2
        for ws in [*held, *partners, again]:
            await ws.close()
