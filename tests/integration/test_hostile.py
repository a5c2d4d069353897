"""A corpus of hostile inputs against real servers on loopback: every one refused cleanly,
nothing changed, the server still serving everyone else afterwards.

Huge and numerous headers, huge bodies, slow and idle clients, invalid UTF-8, deeply nested
JSON, NaN and huge numbers, SQL injection in every report filter, spreadsheet formulas in
report cells, oversized frames and datagrams, and UDP answers to strangers kept small.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import InProcessServer, in_process_server, stack_env, udp_exchange
from websockets.asyncio.client import connect

from trinity_beast.domain.envelope import FIELDS, dumps
from trinity_beast.domain.tick import Tick
from trinity_beast.transports.http.guards import MAX_BODY_BYTES, MAX_HEADER_BYTES, LimitedHttpTools
from trinity_beast.transports.http.lrs import build_lrs
from trinity_beast.transports.udp.datagram import SMALL_ANSWER_BYTES

SQL = [
    "' OR '1'='1",
    "1; DROP TABLE api_keys; --",
    "ak_1' UNION SELECT secret_hash FROM api_keys --",
    "BTC') OR 1=1 --",
    "%' OR asset LIKE '%",
    "1 OR 1=1",
    "$$; DELETE FROM usage_buckets; $$",
    "\\'; --",
]
FILTERS = [
    "api_key_id",
    "endpoint",
    "asset",
    "protocol",
    "status",
    "from",
    "to",
    "granularity",
    "format",
    "limit",
    "cursor",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    env = {**stack_env(None, "embedded", tmp_path_factory.mktemp("hostile"))}  # type: ignore[arg-type]
    with in_process_server(env, lrs=True) as server:
        now = time.time()
        server.call(
            server.rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now + 600, now + 600))
        )
        while not server.rt.live.get("BTC"):
            time.sleep(0.02)
        yield server


def port(srv: InProcessServer) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def raw_http(srv: InProcessServer, data: bytes, url: str | None = None, read_timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout); return what came back."""
    target = int((url or srv.url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", target), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def envelope_of(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    msg = json.loads(body)
    assert tuple(msg) == FIELDS and msg["status_code"] == status and msg["status"].startswith("❌")
    return status, msg


def still_serving(srv: InProcessServer) -> None:
    r = httpx.get(srv.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=10)
    assert r.status_code == 200


# ---- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"GET /price?asset=BTC HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n", 431),
        (b"GET /price HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(3000)) + b"\r\n", 431),
        (b"GET /price?asset=" + b"A" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (b"GET /price?asset=BTC HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413),
        (
            b"POST /partners HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n") * (MAX_BODY_BYTES // 65536 + 2)
            + b"0\r\n\r\n",
            413,
        ),
    ],
    ids=["huge-header", "many-headers", "huge-url", "declared-huge-body", "chunked-huge-body"],
)
def test_oversized_requests_are_refused_with_an_envelope(
    srv: InProcessServer, request_bytes: bytes, status: int
) -> None:
    # A streamed body is refused where a route reads it: the LRS partner routes (admin).
    target = srv.lrs_url if request_bytes.startswith(b"POST /partners") else srv.url
    got, msg = envelope_of(raw_http(srv, request_bytes.replace(b"{key}", srv.admin_key.encode()), target))
    assert got == status and "over" in msg["error"]
    assert msg["region"] == "us-east-2"  # a full envelope of the service, built below the app
    still_serving(srv)


def test_slow_and_idle_clients_are_cut_off(srv: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LimitedHttpTools, "header_timeout_s", 1.0)
    with (
        socket.create_connection(("127.0.0.1", port(srv)), timeout=10) as slow,
        socket.create_connection(("127.0.0.1", port(srv)), timeout=10) as idle,
    ):
        time.sleep(0.05)
        slow.sendall(b"GET /price?asset=BTC HTTP/1.1\r\nHost: x\r\n")
        started, answer = time.time(), b""
        try:
            while True:  # a header byte now and then: slowloris
                slow.sendall(b"X")
                time.sleep(0.2)
                if time.time() - started > 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = slow.recv(65536)
        except ConnectionResetError:
            pass
        assert time.time() - started < 3
        assert answer.startswith(b"HTTP/1.1 408") and envelope_of(answer)[1]["error"].startswith(
            "request headers not complete"
        )
        assert idle.recv(10) == b""  # connected, said nothing: closed quietly
    with socket.create_connection(("127.0.0.1", port(srv)), timeout=15) as keep:
        keep.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b"}"):  # head and body may come in separate segments
            response += keep.recv(65536)
        assert response.startswith(b"HTTP/1.1 200")
        idle_from = time.time()
        assert keep.recv(10) == b"" and 4 <= time.time() - idle_from < 8  # keep-alive idle timeout (5 s)
    still_serving(srv)


# ---- encodings, nesting, numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /price?asset=%FF%FE%00 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?asset=\xff\xfe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?asset=BTC HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\r\n\r\n",
        b"GET /price?asset=BTC&api_key=%C0%AF%ED%A0%80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /usage/me?api_key=\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /price?max_age_ms=NaN&asset=BTC HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?max_age_ms=1e309&asset=BTC HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?max_age_ms=99999999999999999999999999&asset=BTC HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?max_age_ms=-0&asset=BTC HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
        b"GET /price?asset=" + b"BTC," * 5000 + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n",
    ],
)
def test_invalid_utf8_and_bad_numbers_get_a_4xx_envelope(srv: InProcessServer, request_bytes: bytes) -> None:
    request_bytes = request_bytes.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")  # no keep-alive wait
    answer = raw_http(srv, request_bytes.replace(b"{key}", srv.admin_key.encode()))
    if answer.startswith(b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain"):
        return  # rejected by the HTTP parser itself, before any app code (invalid request line)
    status, msg = envelope_of(answer)
    assert 400 <= status < 500, msg


async def test_hostile_websocket_frames(srv: InProcessServer) -> None:
    url = srv.url.replace("http://", "ws://") + f"/ws/prices?api_key={srv.admin_key}"
    frames: list[str | bytes] = [
        b"\xff\xfe\xfd invalid utf-8",
        "[" * 60_000,
        '{"subscribe":' * 4_000,
        '{"subscribe": ["BTC"], "x": NaN}',
        json.dumps({"subscribe": ["BTC"] * 10_000})[:60_000],
        '{"subscribe": [1e309]}',
        '{"ping": 1e999}',
        '{"subscribe": ["' + "A" * 50_000 + '"]}',
        "\x00" * 1000,
    ]
    async with connect(url, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply == {"type": "pong"} or reply["status_code"] in (200, 400), (frame[:40], reply)
        await ws.send('{"subscribe": ["BTC"]}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["data"]["type"] == "subscribed"


def test_datagrams_from_strangers_never_get_more_than_512_bytes_nor_3x_what_they_sent(srv: InProcessServer) -> None:
    rng = random.Random(5)
    corpus: list[bytes] = [
        b"",
        b"{}",
        b"[]",
        b"null",
        b"\xff" * 100,
        b"[" * 1500,
        b'{"asset":' * 200,
        b'{"asset": "BTC", "max_age_ms": 1e309}',
        b'{"asset": "BTC", "max_age_ms": NaN}',
        b'{"asset": "' + b"B" * 1900 + b'"}',
        json.dumps({"asset": ["BTC"] * 300}).encode()[:2000],
        b"x" * 60_000,
    ]
    corpus += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(300)]
    corpus += [
        json.dumps({"asset": "BTC", "api_key": "tbk_" + "x" * rng.randrange(1, 1900)}).encode() for _ in range(100)
    ]
    smallest = min(
        len(dumps(srv.udp_server.envelopes.error("/price", status, "bad request"))) for status in (400, 401, 413)
    )
    biggest = answered = 0
    for payload in corpus:
        data = udp_exchange(srv.udp_server, srv.udp_port, payload)
        if data is None:
            assert 3 * len(payload) < smallest + 40, len(payload)  # dropped only when no short error could fit
            continue
        answered += 1
        msg = json.loads(data)
        assert tuple(msg) == FIELDS and 400 <= msg["status_code"] < 500 and msg["api_key_id"] is None
        assert len(data) <= 3 * len(payload)
        biggest = max(biggest, len(data))
    assert biggest <= SMALL_ANSWER_BYTES and answered > 300
    still_serving(srv)


# ---- reports: SQL injection and spreadsheet formulas ---------------------------------------------


@pytest.mark.parametrize("stack", ["embedded", "production"])
async def test_sql_injection_in_every_report_filter_changes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    from trinity_beast.domain.keys import new_key
    from trinity_beast.domain.settings import load_settings
    from trinity_beast.services.runtime import Runtime

    rt = Runtime.create(load_settings(stack_env(request, stack, tmp_path)))
    await rt.start()
    try:
        sub, sub_secret = new_key("tenant", "subscriber", 1000)
        other, _ = new_key("other", "subscriber", 1000)
        admin, _admin_secret = new_key("admin", "admin")
        for key in (sub, other, admin):
            rt.db.insert_key(key)
        rt.meter.record(other.id, "/price", "BTC", "http", 200, 0.001, True)
        rt.meter.record(sub.id, "/price", '=HYPERLINK("http://evil")', "http", 200, 0.001, True)
        rt.meter.record(sub.id, "/price", "@SUM(A1:A9)", "udp", 200, 0.001, True)
        await rt.meter.flush()
        before = [rt.db.query(f"SELECT COUNT(*) FROM {t}") for t in ("api_keys", "usage_buckets")]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(build_lrs(rt)), base_url="http://lrs") as c:
            tried = 0
            for name in FILTERS:
                for payload in SQL:
                    r = await c.get(
                        "/reports/usage", params={name: payload}, headers={"Authorization": f"Bearer {sub_secret}"}
                    )
                    tried += 1
                    assert r.status_code in (200, 400, 403), (name, payload, r.text)
                    assert other.id not in r.text  # an error may echo the (truncated) input, never data
                    if r.status_code == 200:
                        assert "secret_hash" not in r.text
            assert tried == len(FILTERS) * len(SQL)
            for fmt in ("csv", "tsv"):  # a formula that got into a row is never a formula in a file
                body = (
                    await c.get(
                        "/reports/usage", params={"format": fmt}, headers={"Authorization": f"Bearer {sub_secret}"}
                    )
                ).text
                delimiter = "," if fmt == "csv" else "\t"
                cells = [cell for row in csv.reader(io.StringIO(body), delimiter=delimiter) for cell in row]
                assert '\'=HYPERLINK("http://evil")' in cells and "'@SUM(A1:A9)" in cells
                assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
        after = [rt.db.query(f"SELECT COUNT(*) FROM {t}") for t in ("api_keys", "usage_buckets")]
        assert after == before
    finally:
        await rt.stop()


def test_a_failure_inside_a_route_still_answers_an_envelope(
    srv: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trinity_beast.services.prices.answer import PriceDesk

    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(PriceDesk, "answer", broken)
    r = httpx.get(srv.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=10)
    assert r.status_code == 500 and tuple(r.json()) == FIELDS and r.json()["error"].startswith("internal error")
    monkeypatch.undo()
    still_serving(srv)
