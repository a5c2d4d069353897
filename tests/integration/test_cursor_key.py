"""Issue 13, probe 7: a report cursor forged with the public signing constant was accepted.

The MAC key is now the deployment's own: BEAST_CURSOR_KEY when set (on AWS, from the
stack's secret), else generated on first start and kept in the database, so every process of
a deployment agrees and a restart keeps working cursors. Every bad cursor is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import stack_env

from trinity_beast.domain.keys import new_key
from trinity_beast.domain.settings import load_settings
from trinity_beast.services.reports.cursor import encode_cursor
from trinity_beast.services.runtime import Runtime
from trinity_beast.transports.http.lrs import build_lrs

OLD_PUBLIC_KEY = b"trinity-beast-report-cursor"


async def first_page(rt: Runtime, secret: str) -> tuple[httpx.Response, str]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as c:
        r = await c.get(
            "/reports/usage",
            params={"limit": "1", "granularity": "minute"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    return r, r.json()["data"]["paging"]["next_cursor"]


async def page(rt: Runtime, secret: str, cursor: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as c:
        return await c.get(
            "/reports/usage",
            params={"limit": "1", "granularity": "minute", "cursor": cursor},
            headers={"Authorization": f"Bearer {secret}"},
        )


async def runtime_with_usage(env: dict[str, str]) -> tuple[Runtime, str]:
    rt = Runtime.create(load_settings(env))
    key, secret = new_key("admin", "admin")
    rt.db.insert_key(key)
    for asset in ("BTC", "ETH", "SOL"):
        rt.meter.record(key.id, "/price", asset, "http", 200, 0.001, True, now=time.time())
    await rt.meter.flush()
    return rt, secret


def forged(payload: dict[str, Any], key: bytes, digest_size: int) -> str:
    raw = json.dumps(payload).encode()
    mac = hashlib.blake2b(raw, key=key, digest_size=digest_size).hexdigest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + mac


@pytest.mark.parametrize("stack", ["embedded", "production"])
async def test_cursors_are_signed_with_the_deployments_own_key(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    env = stack_env(request, stack, tmp_path)
    rt, secret = await runtime_with_usage(env)
    try:
        r, cursor = await first_page(rt, secret)
        assert r.status_code == 200 and cursor
        assert (await page(rt, secret, cursor)).status_code == 200
        # Forged with the constant that used to be in the code, with any span: refused, never a 500.
        fp = cursor  # only its shape matters below
        for payload in (
            {"after": [0, "ak_1", "/price", "BTC", "http", 200], "q": "0" * 16},
            {"after": [0, "ak_1", "/price", "BTC", "http", 200], "q": "0" * 16, "span": [0, 10**30]},
            {"after": [0, "ak_1", "/price", "BTC", "http", 200], "q": "0" * 16, "span": [-5, 7]},
        ):
            for size in (8, 16):  # the old MAC, and the new length with the old key
                bad = await page(rt, secret, forged(payload, OLD_PUBLIC_KEY, size))
                assert bad.status_code == 400 and bad.json()["error"].startswith("cursor:"), bad.text
        for junk in (".", fp + "x", "é.é", "a" * 5000, fp.replace(".", "..")):
            bad = await page(rt, secret, junk)
            assert bad.status_code == 400, (junk[:20], bad.text)
        # Another process of the same deployment (same database) shares the key.
        twin = Runtime.create(load_settings(env))
        try:
            assert twin.report_reader.cursor_key == rt.report_reader.cursor_key
            assert (await page(twin, secret, cursor)).status_code == 200
        finally:
            await twin.stop()
    finally:
        await rt.stop()
    # A restart keeps the key (it lives in the database), so an open report can go on.
    again = Runtime.create(load_settings(env))
    try:
        assert (await page(again, secret, cursor)).status_code == 200
    finally:
        await again.stop()


async def test_another_deployment_or_a_configured_key(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    one, secret = await runtime_with_usage(stack_env(request, "embedded", tmp_path / "one"))
    other, other_secret = await runtime_with_usage(stack_env(request, "embedded", tmp_path / "two"))
    configured = stack_env(request, "embedded", tmp_path / "three") | {"BEAST_CURSOR_KEY": "c" * 40}
    third, third_secret = await runtime_with_usage(configured)
    try:
        assert one.report_reader.cursor_key != other.report_reader.cursor_key  # generated per deployment
        _, cursor = await first_page(one, secret)
        assert (await page(other, other_secret, cursor)).status_code == 400
        _, cursor3 = await first_page(third, third_secret)
        key3 = third.report_reader.cursor_key
        assert encode_cursor((0, "a", "b", "c", "d", 200), "f", key=key3) != encode_cursor(
            (0, "a", "b", "c", "d", 200), "f", key=one.report_reader.cursor_key
        )
        assert (await page(third, third_secret, cursor3)).status_code == 200
    finally:
        for rt in (one, other, third):
            await rt.stop()
    with pytest.raises(Exception, match="BEAST_CURSOR_KEY: expected at least 32"):
        load_settings({"BEAST_CURSOR_KEY": "short"})
