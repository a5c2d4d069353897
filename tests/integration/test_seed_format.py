"""The seed system's wire format, exactly (issue 15): its published examples are golden
fixtures (tests/fixtures/seed/), and every protocol's real answer is compared with them field
by field — JSON type always (an int is not a float), format where the value depends on time,
key or market, the value itself everywhere else. Our answers may carry more fields only where
docs/api.md lists them as added. The seed's published UDP client runs unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import UNREACHABLE_EXCHANGES, BeastProcess, start_beast_serve, stop_beast
from websockets.asyncio.client import connect

from samlocal import REPO, invoke

SEED = REPO / "tests" / "fixtures" / "seed"
PRICE = json.loads((SEED / "price_answer.json").read_text())
WS_PRICE_DATA = json.loads((SEED / "ws_price_data.json").read_text())
WS_SUBSCRIBED_DATA = json.loads((SEED / "ws_subscribed_data.json").read_text())
WS_PONG = (SEED / "ws_pong.json").read_text().strip()
ENVELOPE = {k: v for k, v in PRICE.items() if k != "data"}  # the seed's envelope, without its data
USAGE = {k: PRICE["data"][k] for k in ("monthly_usage", "monthly_limit", "usage_pct", "usage_warning")}

SECONDS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ASSET = re.compile(r"[A-Z0-9]{1,15}")
SOURCE = re.compile(r"[a-z]+-(ws|rest)")
KEY_ID = re.compile(r"ak_[0-9a-f]{16}")
SEED_IP = PRICE["ip_address"]  # the servers below run with BEAST_IP_ADDRESS set to the example's

# Fields whose value depends on time, key or market: their type is compared, and their format
# when a pattern is given; every other field must have the example's value.
VARIES: dict[str, re.Pattern[str] | None] = {
    "api_key_id": KEY_ID,
    "timestamp": SECONDS_Z,
    "data.assets[].price": None,
    "data.assets[].exchange": SOURCE,
    "data.assets[].cached": None,
    "data.assets[].cache_age_seconds": None,
    "data.assets[].timestamp": None,
    "data.assets[].readable_timestamp": SECONDS_Z,
    "data.assets[].latency_ms": None,
    "data.duration_ms": None,
    "data.monthly_usage": None,
    "data.asset": ASSET,
    "data.price": None,
    "data.source": SOURCE,
}
# Fields we add to the seed's objects (docs/api.md, "Added fields"), by path.
ADDED = {
    "data.duration_us",
    "data.assets[].timestamp_ms",
    "data.assets[].latency_us",
    "data.assets[].converted_from",
    "data.assets[].stale",
    "data.assets[].sources",
    "data.timestamp",
    "data.timestamp_ms",
    "data.converted_from",
    "data.unsubscribed",
}


def json_type(value: Any) -> str:
    """The JSON type a strictly typed client sees: integer and number are different."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def like_seed(ours: Any, seed: Any, path: str = "") -> None:
    """`ours` has every field of `seed`, in its order, with its JSON type, and its value unless
    the field VARIES (then its format); any other field of ours is one of the ADDED."""
    where = path or "the answer"
    assert json_type(ours) == json_type(seed), (
        f"{where}: {json_type(ours)} {ours!r} where the seed has {json_type(seed)} {seed!r}"
    )
    if isinstance(seed, dict):
        assert [k for k in ours if k in seed] == list(seed), (
            f"{where}: fields {list(ours)}, the seed's are {list(seed)}"
        )
        for name in seed:
            like_seed(ours[name], seed[name], f"{path}.{name}" if path else name)
        added = [f"{path}.{k}" if path else k for k in ours if k not in seed]
        assert set(added) <= ADDED, f"{where}: fields neither the seed's nor documented as added: {set(added) - ADDED}"
    elif isinstance(seed, list) and seed and isinstance(seed[0], dict):
        assert ours, f"{where}: empty where the seed has entries"
        for item in ours:
            like_seed(item, seed[0], f"{path}[]")
    elif path in VARIES:
        pattern = VARIES[path]
        assert pattern is None or pattern.fullmatch(ours), f"{where}: {ours!r} is not in the seed's format"
    else:
        assert ours == seed, f"{where}: {ours!r} where the seed has {seed!r}"


def arn(profile: str) -> str:
    return f"arn:tbi:us-east-2:211998422884:agent-profile/{profile}/v1"


def like_seed_envelope(
    body: dict[str, Any], service: str, endpoint: str, profile: str, status: int = 200, keyless: bool = False
) -> None:
    """The 12 fields as the seed's example has them, for another service, endpoint and profile.

    The seed published a success with a key; an answer without a valid key has `api_key_id`
    null, and an error a non-empty `error` (docs/api.md): those two are checked apart."""
    compared = {k: v for k, v in body.items() if k != "data"}
    if keyless:
        assert body["api_key_id"] is None
        compared["api_key_id"] = "ak_0000000000000000"
    if status >= 400:
        assert isinstance(body["error"], str) and body["error"]
        compared["error"] = ""
    mark = "✅" if status < 400 else "❌"
    expected = {
        **ENVELOPE,
        "status": f"{mark} [{service}] [us-east-2] [BeastMain] [{endpoint}] [{status}]",
        "status_code": status,
        "endpoint": endpoint,
        "agent_profile_arn": arn(profile),
    }
    assert list(body) == list(PRICE)  # the 12 fields, in order
    like_seed(compared, expected)


def price_checks(body: dict[str, Any]) -> None:
    """What the example's values imply beyond type and format: one instant, two spellings."""
    for entry in body["data"]["assets"]:
        assert entry["readable_timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["timestamp"]))
        assert entry["timestamp_ms"] // 1000 == entry["timestamp"]
        assert abs(entry["timestamp"] - time.time()) < 3600


# ---- `beast serve`: LPO (HTTP, UDP, WebSocket) and LRS (HTTP, UDP) --------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BeastProcess, str]]:
    """`beast serve --sim` (embedded stack), with the example's address, and its admin key."""
    tmp = tmp_path_factory.mktemp("seed")
    env = {"BEAST_DATA_DIR": str(tmp / "data"), "BEAST_IP_ADDRESS": SEED_IP, **UNREACHABLE_EXCHANGES}
    p = start_beast_serve(env, cwd=tmp, args=("--sim",))
    try:
        secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))
        deadline = time.time() + 60
        while True:  # the simulator's feeds reach the book within seconds; poll, never sleep for it
            r = httpx.get(p.url + "/price?asset=BTC,ETH,SOL", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
            if r.status_code == 200 and len(r.json()["data"]["assets"]) == 3:
                break
            assert time.time() < deadline, f"no simulated prices after 60 s: {r.text}"
            time.sleep(0.2)
        yield p, secret
    finally:
        stop_beast(p)


def udp(port: int, message: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(30)
        sock.sendto(json.dumps(message).encode(), ("127.0.0.1", port))
        data, _ = sock.recvfrom(4096)
    return json.loads(data)


def test_the_fixtures_are_the_published_examples() -> None:
    """A guard against editing the reference to fit our output."""
    assert PRICE["error"] == "" and PRICE["data"]["usage_warning"] == "" and PRICE["language"] == "en"
    assert PRICE["timestamp"] == "2026-05-29T22:00:00Z" and PRICE["data"]["assets"][0]["timestamp"] == 1748548800
    assert PRICE["agent_profile_arn"] == arn("tbi") and list(PRICE) == [
        "status",
        "status_code",
        "endpoint",
        "cluster_node",
        "region",
        "language",
        "api_key_id",
        "ip_address",
        "agent_profile_arn",
        "timestamp",
        "data",
        "error",
    ]
    assert WS_PRICE_DATA == {"type": "price", "asset": "BTC", "price": 97432.51, "source": "coinbase-ws"}
    assert (
        WS_SUBSCRIBED_DATA == {"type": "subscribed", "assets": ["BTC", "ETH", "SOL"]} and WS_PONG == '{"type":"pong"}'
    )


def test_http_price_is_the_seeds(served: tuple[BeastProcess, str]) -> None:
    p, secret = served
    r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    like_seed(body, PRICE)
    price_checks(body)


def test_udp_price_is_the_seeds(served: tuple[BeastProcess, str]) -> None:
    p, secret = served
    body = udp(int(p.env["BEAST_LPO_UDP_PORT"]), {"asset": "BTC", "api_key": secret})
    like_seed(body, PRICE)
    price_checks(body)


def test_the_seeds_published_udp_client_runs_unchanged(served: tuple[BeastProcess, str], tmp_path: Path) -> None:
    p, secret = served
    published = (SEED / "udp_client.py").read_text()
    port = p.env["BEAST_LPO_UDP_PORT"]
    # Only what its user fills in: the key, and the port (a test cannot own 2679 on a shared machine).
    ours = published.replace('"YOUR_KEY"', json.dumps(secret)).replace('("127.0.0.1", 2679)', f'("127.0.0.1", {port})')
    changed = [(a, b) for a, b in zip(published.splitlines(), ours.splitlines(), strict=True) if a != b]
    assert len(changed) == 2 and ours.count(secret) == 1
    script = tmp_path / "udp_client.py"
    script.write_text(ours)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr + run.stdout
    lines = run.stdout.splitlines()
    assert lines[0].startswith("✅ [LPO] [us-east-2] [BeastMain] [/price] [200] at ")
    assert lines[0].endswith("(region us-east-2, profile tbi)")
    assert re.fullmatch(
        r"BTC: \d+\.\d\d USD from [a-z]+-(ws|rest), quoted \d\d:\d\d:\d\d \(shown \d\d:\d\d:\d\d\), "
        r"\d+\.\d{3} s old, \d+ ms",
        lines[1],
    ), lines[1]
    assert re.fullmatch(r"usage: \d+ of unlimited \(0\.0 %\), took \d+ ms", lines[2]), lines[2]
    assert len(lines) == 3  # an admin key: no usage warning


async def test_websocket_subscribed_push_and_pong_are_the_seeds(served: tuple[BeastProcess, str]) -> None:
    p, secret = served
    url = p.url.replace("http://", "ws://") + f"/ws/prices?api_key={secret}"
    async with connect(url) as ws:
        await ws.send(json.dumps({"subscribe": ["BTC", "ETH", "SOL"]}))
        subscribed = json.loads(await asyncio.wait_for(ws.recv(), 30))
        like_seed_envelope(subscribed, "WS", "/ws/prices", "partner-ws-hub")
        like_seed(subscribed["data"], WS_SUBSCRIBED_DATA, "data")

        pushes: list[dict[str, Any]] = []
        while {"BTC", "ETH", "SOL"} - {m["data"]["asset"] for m in pushes}:  # each one's price comes at once
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert message["data"]["type"] == "price", message
            pushes.append(message)
        for push in pushes:
            like_seed_envelope(push, "WS", "/ws/prices", "partner-ws-hub")
            like_seed(push["data"], WS_PRICE_DATA, "data")
            assert push["data"]["timestamp_ms"] // 1000 == push["data"]["timestamp"]

        await ws.send(json.dumps({"ping": True}))
        while True:
            raw = await asyncio.wait_for(ws.recv(), 30)
            if '"type":"price"' not in raw:
                break
        assert raw == WS_PONG  # bare, byte for byte: the one message without an envelope


def test_lrs_http_and_udp_use_the_seeds_envelope(served: tuple[BeastProcess, str]) -> None:
    p, secret = served
    lrs = f"http://127.0.0.1:{p.env['BEAST_LRS_PORT']}"
    auth = {"Authorization": f"Bearer {secret}"}
    report = httpx.get(lrs + "/reports/usage", headers=auth, timeout=30)
    assert report.status_code == 200, report.text
    like_seed_envelope(report.json(), "LRS", "/reports/usage", "tbi-reports")

    me = httpx.get(lrs + "/usage/me", headers=auth, timeout=30).json()
    like_seed_envelope(me, "LRS", "/usage/me", "tbi-reports")
    like_seed({k: me["data"][k] for k in USAGE}, USAGE, "data")  # the seed's usage fields, its types

    summary = udp(int(p.env["BEAST_LRS_UDP_PORT"]), {"report": "usage", "api_key": secret})
    like_seed_envelope(summary, "LRS", "/reports/usage", "tbi-reports")
    assert summary["data"]["type"] == "usage_summary"

    refused = httpx.get(lrs + "/reports/usage", timeout=30).json()
    like_seed_envelope(refused, "LRS", "/reports/usage", "tbi-reports", status=401, keyless=True)
    assert refused["error"].startswith("missing API key")


# ---- every Lambda function ------------------------------------------------------------------


EVENTS = REPO / "events"


def lambda_event(name: str, secret: str) -> dict[str, Any]:
    event = json.loads((EVENTS / name).read_text())
    if "Authorization" in (event.get("headers") or {}):
        event["headers"]["Authorization"] = event["multiValueHeaders"]["Authorization"][0] = f"Bearer {secret}"
    return event


@pytest.fixture
def lambda_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis and PostgreSQL as the functions see them, the example's address, and an admin key."""
    from trinity_beast.domain.keys import new_key
    from trinity_beast.stores.db.postgres import PostgresDatabase

    env = {
        **UNREACHABLE_EXCHANGES,
        "BEAST_PREWARM": "false",
        "BEAST_IP_ADDRESS": SEED_IP,
        "REDIS_URL": request.getfixturevalue("redis_url"),
        "BEAST_REDIS_NAMESPACE": request.getfixturevalue("redis_namespace"),
        "DATABASE_URL": request.getfixturevalue("pg_url"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    db = PostgresDatabase(env["DATABASE_URL"])
    db.migrate()
    key, secret = new_key("admin", "admin")
    db.insert_key(key)
    yield secret
    db.close()


def lambda_body(function: str, event: dict[str, Any], status: int = 200) -> dict[str, Any]:
    result = invoke(function, event)
    assert result["statusCode"] == status, result["body"]
    return json.loads(result["body"])


def test_the_assets_function_answers_as_the_lpo(lambda_env: str) -> None:
    body = lambda_body("AssetsFunction", lambda_event("assets_list.json", lambda_env))
    like_seed_envelope(body, "LPO", "/ws/assets", "tbi", keyless=True)  # a route without a key


def test_the_reports_function_answers_as_the_lrs(lambda_env: str) -> None:
    body = lambda_body("ReportsFunction", lambda_event("reports_usage_json.json", lambda_env))
    like_seed_envelope(body, "LRS", "/reports/usage", "tbi-reports")
    me = lambda_body("ReportsFunction", lambda_event("reports_usage_me.json", lambda_env))
    like_seed_envelope(me, "LRS", "/usage/me", "tbi-reports")
    like_seed({k: me["data"][k] for k in USAGE}, USAGE, "data")


def test_the_partners_function_answers_with_the_partners_profile(lambda_env: str) -> None:
    body = lambda_body("PartnersFunction", lambda_event("partners_list.json", lambda_env))
    like_seed_envelope(body, "LRS", "/partners", "tbi-partners")
    # Refused before the app runs (no requestContext): the function's own answer, the same profile.
    bad = lambda_body("PartnersFunction", {"httpMethod": "GET", "path": "/partners"}, status=400)
    like_seed_envelope(bad, "LRS", "-", "tbi-partners", status=400, keyless=True)
    assert bad["error"].startswith("malformed event")


def test_docs_list_every_added_field() -> None:
    """docs/api.md's "Added fields" names each field our answers add to the seed's."""
    api = (REPO / "docs" / "api.md").read_text()
    section = api[api.index("## Added fields") : api.index("## Authentication")]
    for path in sorted(ADDED):
        assert f"`{path.rsplit('.', 1)[-1]}`" in section, f"{path} is not listed in docs/api.md's Added fields"
