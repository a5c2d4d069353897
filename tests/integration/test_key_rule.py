"""Issue 13, probes 8 and 10: one rule for where the key is read, the same answer for unknown
and revoked keys, protocol-correct wording, and ASCII-only inputs.

The rule (services/auth.py): `Authorization: Bearer KEY` wins; any other Authorization
header is a 401 (never a fallback); the query's or payload's key counts only without the
header. Checked on every transport over real loopback servers: HTTP /price (raw ASGI),
the FastAPI routes (/usage/me on the LPO, /reports/usage on the LRS), WebSocket, UDP, and the
reports Lambda function.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import InProcessServer, in_process_server, stack_env
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.services.auth import INVALID_KEY, MALFORMED_AUTHORIZATION, credentials


@pytest.fixture(params=["embedded", "production"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    env = stack_env(request, request.param, tmp_path) | {"BEAST_FEEDS": "false", "BEAST_PREWARM": "false"}
    with in_process_server(env, lrs=True) as server:
        yield server


def keys(srv: InProcessServer) -> tuple[str, str]:
    """(an active subscriber secret, a revoked one)."""
    _, good = srv.create_key("subscriber")
    revoked_id, revoked = srv.create_key("subscriber")
    srv.rt.db.revoke_key(revoked_id, time.time())
    return good, revoked


def routes(srv: InProcessServer) -> list[str]:
    assert srv.lrs_url is not None
    return [
        f"{srv.url}/price?asset=BTC",
        f"{srv.url}/usage/me",
        f"{srv.lrs_url}/usage/me",
        f"{srv.lrs_url}/reports/usage",
    ]


def test_the_rule_itself() -> None:
    assert credentials([(b"authorization", b"Bearer tbk_a")], "tbk_q").secret == "tbk_a"
    assert credentials([("Authorization", "bearer   tbk_a ")], None).secret == "tbk_a"
    assert credentials([], "tbk_q").secret == "tbk_q"
    for bad in ("Basic abc", "Bearer", "Bearer ", "Bearer a b", "tbk_a", "Token tbk_a"):
        creds = credentials([("authorization", bad)], "tbk_q")
        assert creds.secret is None and creds.problem == MALFORMED_AUTHORIZATION, bad
    two = credentials([("authorization", "Bearer a"), ("authorization", "Bearer b")], None)
    assert two.problem == MALFORMED_AUTHORIZATION


def test_every_http_route_reads_the_key_the_same_way(srv: InProcessServer) -> None:
    good, revoked = keys(srv)
    with httpx.Client(timeout=10) as c:
        for url in routes(srv):
            sep = "&" if "?" in url else "?"
            # The header wins over the query, either way round.
            assert c.get(url, headers={"Authorization": f"Bearer {good}"}, params=None).status_code in (200, 404), url
            r = c.get(f"{url}{sep}api_key={revoked}", headers={"Authorization": f"Bearer {good}"})
            assert r.status_code in (200, 404), (url, r.text)
            r = c.get(f"{url}{sep}api_key={good}", headers={"Authorization": f"Bearer {revoked}"})
            assert r.status_code == 401 and r.json()["error"] == INVALID_KEY, url
            # The query counts without a header.
            assert c.get(f"{url}{sep}api_key={good}").status_code in (200, 404), url
            # A malformed header is a 401, never a fallback to the query.
            r = c.get(f"{url}{sep}api_key={good}", headers={"Authorization": f"Basic {good}"})
            assert r.status_code == 401 and r.json()["error"] == MALFORMED_AUTHORIZATION, url
            assert r.headers["www-authenticate"].startswith("Bearer")
            # Unknown and revoked answer alike.
            unknown = c.get(url, headers={"Authorization": "Bearer tbk_never_issued_0000000000000"})
            gone = c.get(url, headers={"Authorization": f"Bearer {revoked}"})
            assert unknown.status_code == gone.status_code == 401
            assert unknown.json()["error"] == gone.json()["error"] == INVALID_KEY


async def ws_close(url: str, headers: dict[str, str] | None = None) -> tuple[int, str] | None:
    """(code, reason) when the server closes at once; None when it lets the connection stay."""
    async with connect(url, additional_headers=headers or {}) as ws:
        try:
            await ws.send('{"ping": true}')
            reply = await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (0, "")
        assert json.loads(reply) == {"type": "pong"}
        return None


async def test_websockets_follow_the_same_rule(srv: InProcessServer) -> None:
    good, revoked = keys(srv)
    base = srv.url.replace("http://", "ws://") + "/ws/prices"
    # Probe 8: a revoked header with a valid query key was accepted (the query won).
    assert await ws_close(f"{base}?api_key={good}", {"Authorization": f"Bearer {revoked}"}) == (1008, INVALID_KEY)
    assert await ws_close(f"{base}?api_key={revoked}", {"Authorization": f"Bearer {good}"}) is None
    assert await ws_close(f"{base}?api_key={good}") is None
    assert await ws_close(f"{base}?api_key={good}", {"Authorization": "Basic x"}) == (1008, MALFORMED_AUTHORIZATION)
    assert await ws_close(f"{base}?api_key={revoked}") == (1008, INVALID_KEY)
    assert await ws_close(f"{base}?api_key=tbk_never_issued_0000000000000") == (1008, INVALID_KEY)
    code, reason = await ws_close(base) or (0, "")
    assert code == 1008 and reason.startswith("missing API key: connect with")


def test_udp_wording_and_unknown_equals_revoked(srv: InProcessServer) -> None:
    good, revoked = keys(srv)

    def ask(message: dict) -> dict:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            # padded: large enough to carry its error under the anti-amplification rule
            sock.sendto(json.dumps(message).encode() + b" " * 200, ("127.0.0.1", srv.udp_port))
            return json.loads(sock.recvfrom(4096)[0])

    missing = ask({"asset": "BTC"})
    assert missing["status_code"] == 401 and missing["error"] == 'missing API key: put "api_key": "KEY" in the datagram'
    assert "Authorization" not in missing["error"] and "?api_key" not in missing["error"]
    assert (
        ask({"asset": "BTC", "api_key": revoked})["error"]
        == ask({"asset": "BTC", "api_key": "tbk_never_issued_000000"})["error"]
        == INVALID_KEY
    )
    assert ask({"asset": "BTC", "api_key": good})["status_code"] in (200, 404)


@pytest.mark.parametrize(
    "query,error",
    [
        ("asset=%C3%9F", "malformed asset 'ß'"),  # "ß".upper() == "SS" was served as SS
        ("asset=%EF%BC%A2TC", "malformed asset 'ＢTC'"),  # full-width letters
        ("asset=BTC%0A", "malformed asset"),  # a trailing newline slipped past `$`
        ("asset=BTC&max_age_ms=%D9%A3", "max_age_ms must be a whole number"),  # Arabic-Indic three
        ("asset=BTC&max_age_ms=1_000", "max_age_ms must be a whole number"),
        ("asset=BTC&max_age_ms=%201000", "max_age_ms must be a whole number"),
        ("asset=BTC&max_age_ms=%2B1000", "max_age_ms must be a whole number"),
    ],
)
def test_only_ascii_asset_names_and_numbers(srv: InProcessServer, query: str, error: str) -> None:
    with srv.client() as c:
        r = c.get(f"/price?{query}", headers={"Authorization": f"Bearer {srv.admin_key}"})
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


def test_report_filters_take_only_ascii(srv: InProcessServer) -> None:
    assert srv.lrs_url is not None
    with httpx.Client(base_url=srv.lrs_url, timeout=10, headers={"Authorization": f"Bearer {srv.admin_key}"}) as c:
        for query, name in (
            ("asset=%C3%9F", "asset"),
            ("status=%D9%A2%D9%A0%D9%A0", "status"),
            ("limit=1_0", "limit"),
            ("from=%D9%A2%D9%A0%D9%A2%D9%A6-01-01", "from"),
        ):
            r = c.get(f"/reports/usage?{query}")
            assert r.status_code == 400 and r.json()["error"].startswith(f"{name}:"), r.text
