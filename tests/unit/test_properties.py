"""Property-based tests (hypothesis) on every parser of outside input.

Each parser gets arbitrary and adversarial input and must either accept it with its
invariants holding or refuse it with its own error type, never anything else: exchange
messages (arbitrary and mutated real frames), REST tickers, Ticks from the cache, UDP
datagrams (LPO and LRS), WebSocket client frames, /price query strings (through the real
ASGI app), report filters and cursors, CIDRs, settings, usage buckets, CSV/TSV cells.
"""

from __future__ import annotations

import asyncio
import csv
import io
import ipaddress
import json
import math
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from beast_sim import PROTOCOLS, SimSession, Simulator
from trinity_beast.domain.assets import load_registry
from trinity_beast.domain.envelope import FIELDS, utc_iso
from trinity_beast.domain.keys import new_key
from trinity_beast.domain.partners.cidr import CidrError, parse_cidr
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import Settings, load_settings
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import Counts, Group, parse_bucket
from trinity_beast.exchanges import CONNECTORS
from trinity_beast.exchanges.base import ExchangeError
from trinity_beast.services.prices.answer import MAX_ASSETS, parse_assets, parse_options
from trinity_beast.services.prices.errors import BadRequest
from trinity_beast.services.reports.cursor import decode_cursor, encode_cursor
from trinity_beast.services.reports.errors import ReportError
from trinity_beast.services.reports.filters import MAX_LIMIT, parse_filters
from trinity_beast.services.reports.gather import Row
from trinity_beast.services.reports.policy import ReportLimits
from trinity_beast.services.reports.render import COLUMNS, render_csv, render_tsv
from trinity_beast.services.runtime import Runtime
from trinity_beast.transports.http.lpo import build_lpo
from trinity_beast.transports.udp.datagram import BadDatagram, decode_object
from trinity_beast.transports.udp.lpo import parse_datagram
from trinity_beast.transports.udp.lrs import FIELDS as REPORT_UDP_FIELDS
from trinity_beast.transports.ws.client import Client
from trinity_beast.transports.ws.hub import Hub

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGISTRY = load_registry()

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["NaN", "Infinity", "-1", "0", "1e999", "1e-999", "", " ", "9" * 80, "\x00", "BTC-USD"])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)
hostile_text = (
    st.text()
    | st.binary().map(lambda b: b.decode("latin-1"))
    | st.sampled_from(
        [
            "' OR 1=1 --",
            "'; DROP TABLE api_keys; --",
            '=HYPERLINK("http://x")',
            "@SUM(A1)",
            "+1",
            "-1",
            "%00",
            "\ud800",
            "../../etc/passwd",
            "a" * 5000,
            "[" * 2000,
            '{"a":' * 600,
        ]
    )
)


# ---- exchange messages ----------------------------------------------------------------------


def state_for(exchange: str) -> Any:
    connector = CONNECTORS[exchange]
    return connector.new_state({i.symbol: (i.asset, i.quote) for i in REGISTRY.instruments_for(exchange)})


def check_parsed(exchange: str, raw: str | bytes) -> None:
    connector = CONNECTORS[exchange]
    received = time.time()
    parsed = connector.parse(raw, received, state_for(exchange))  # never raises
    symbols = {i.asset for i in REGISTRY.instruments_for(exchange)}
    for tick in parsed.ticks:
        assert tick.asset in symbols and tick.exchange == exchange
        assert tick.price.is_finite() and tick.price > 0
        assert utc_iso(tick.exchange_ts) and tick.exchange_ts <= received + 3600  # showable, not from the future
        Tick.from_json(tick.to_json())  # what goes to the cache comes back
    for reply in parsed.replies:
        assert isinstance(reply, str)


def real_frames(exchange: str) -> list[str]:
    """What the simulator (the exchanges' documented shapes) sends: acks, updates, heartbeats."""
    sim = Simulator(seed=1)
    session = SimSession(exchange, sim)
    proto = PROTOCOLS[exchange]
    symbols = [i.symbol for i in REGISTRY.instruments_for(exchange)][:5]
    frames = list(proto.on_connect(session))
    for message in CONNECTORS[exchange].subscribe_messages(symbols):
        frames += proto.on_text(session, message)
    frames += proto.updates(session, symbols) + proto.heartbeat(session) + [proto.bad_ticker(session, symbols[0])]
    return [f if isinstance(f, str) else f.decode("utf-8", "replace") for f in frames]


FRAMES = {ex: real_frames(ex) for ex in CONNECTORS}


def mutate(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Replace one leaf (or a whole subtree) of a decoded frame with something arbitrary."""
    if depth > 6 or data.draw(st.integers(0, 4)) == 0:
        return data.draw(json_values)
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(value[key], data, depth + 1)}
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(value[i], data, depth + 1), *value[i + 1 :]]
    return data.draw(json_values)


@pytest.mark.parametrize("exchange", sorted(CONNECTORS))
@PROPS
@given(raw=st.text(max_size=300) | st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v)))
def test_exchange_messages_arbitrary(exchange: str, raw: str | bytes) -> None:
    check_parsed(exchange, raw)


@pytest.mark.parametrize("exchange", sorted(CONNECTORS))
@PROPS
@given(data=st.data())
def test_exchange_messages_mutated_from_real_frames(exchange: str, data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(FRAMES[exchange]))
    try:
        decoded = json.loads(frame)
    except ValueError:
        decoded = frame
    check_parsed(exchange, json.dumps(mutate(decoded, data)))


@pytest.mark.parametrize("exchange", sorted(CONNECTORS))
@PROPS
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_rest_tickers(exchange: str, body: bytes) -> None:
    try:
        tick = CONNECTORS[exchange].parse_ticker(body, "BTC", "USD", time.time())
    except ExchangeError:
        return
    assert tick.price.is_finite() and tick.price > 0 and utc_iso(tick.exchange_ts)


@PROPS
@given(value=json_values)
def test_ticks_from_the_cache(value: Any) -> None:
    try:
        tick = Tick.from_json(json.dumps(value))
    except (ValueError, KeyError, TypeError, ArithmeticError):  # what LivePrices catches
        return
    assert isinstance(tick.price, Decimal)


# ---- datagrams and WebSocket frames -----------------------------------------------------------


@PROPS
@given(data=st.binary(max_size=3000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_lpo_udp_datagrams(data: bytes) -> None:
    try:
        request = parse_datagram(data)
    except BadDatagram as exc:
        assert exc.status in (400, 401, 413)
        return
    assert request.protocol == "udp" and all(isinstance(a, str) for a in request.assets)


@PROPS
@given(
    data=st.binary(max_size=3000)
    | st.dictionaries(st.sampled_from(REPORT_UDP_FIELDS), json_values).map(lambda v: json.dumps(v).encode())
)
def test_lrs_udp_datagrams(data: bytes) -> None:
    try:
        msg = decode_object(data, REPORT_UDP_FIELDS, "{}")
    except BadDatagram as exc:
        assert exc.status in (400, 401, 413)
        return
    assert isinstance(msg, dict) and set(msg) <= set(REPORT_UDP_FIELDS)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = Runtime.create(load_settings({"BEAST_DATA_DIR": str(tmp_path_factory.mktemp("props"))}))
    rt.spawn = lambda coro, name: coro.close()  # type: ignore[method-assign]  # no first-price fetches
    yield rt
    rt.db.close()


@PROPS
@given(
    frame=st.text(max_size=400)
    | st.binary(max_size=400)
    | json_values.map(json.dumps)
    | st.dictionaries(st.sampled_from(["subscribe", "unsubscribe", "ping", "x"]), json_values).map(json.dumps)
)
def test_websocket_client_frames(runtime: Runtime, frame: str | bytes) -> None:
    key, _ = new_key("ws", "subscriber")
    hub = Hub(runtime)
    client = Client(key, send=None)  # type: ignore[arg-type]
    hub.handle(client, frame)
    assert len(client.control) <= 1 and client.closing is None
    for reply in client.control:
        msg = orjson.loads(reply)
        assert msg == {"type": "pong"} or (tuple(msg) == FIELDS and msg["status_code"] in (200, 400))
    assert len(client.assets) <= 50


# ---- query parameters through the real app -----------------------------------------------------


@pytest.fixture(scope="module")
def price_app(runtime: Runtime) -> Iterator[tuple[Any, str, asyncio.AbstractEventLoop]]:
    key, secret = new_key("props", "admin")
    runtime.db.insert_key(key)
    now = time.time()
    for asset in ("BTC", "ETH"):
        runtime.live.apply(Tick(asset, "USD", Decimal("100"), None, None, "coinbase", now + 3600, now + 3600))
    loop = asyncio.new_event_loop()
    runtime.fallback._failures.update({a: (math.inf, "no live price: offline") for a in REGISTRY.assets})
    yield build_lpo(runtime), secret, loop
    loop.close()


def asgi_get(app: Any, loop: asyncio.AbstractEventLoop, path: str, query: bytes, headers: list) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
        "asgi": {"version": "3.0"},
    }
    loop.run_until_complete(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


query_values = st.text(max_size=60) | st.sampled_from(
    [
        "BTC",
        "btc,eth",
        "BTC," * 60,
        "NaN",
        "inf",
        "-1",
        "1e309",
        "99999999999999999999",
        "0x10",
        "median",
        "%00",
        "\u0000",
    ]
)


@PROPS
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["asset", "aggregate", "max_age_ms", "api_key", "x"]), query_values), max_size=6
    ),
    raw=st.binary(max_size=80),
)
def test_price_query_strings(price_app: tuple, pairs: list[tuple[str, str]], raw: bytes) -> None:
    app, secret, loop = price_app
    from urllib.parse import urlencode

    for query in (urlencode(pairs).encode(), raw):
        status, body = asgi_get(app, loop, "/price", query, [(b"authorization", f"Bearer {secret}".encode())])
        msg = orjson.loads(body)
        assert tuple(msg) == FIELDS and msg["status_code"] == status
        assert status in (200, 400, 401, 404), (query, msg["error"])


@PROPS
@given(values=st.lists(query_values, max_size=5))
def test_asset_lists(values: list[str]) -> None:
    try:
        assets = parse_assets(values)
    except BadRequest:
        return
    assert 1 <= len(assets) <= MAX_ASSETS and len(set(assets)) == len(assets)
    assert all((a.isascii() and a.isalnum() and a.isupper()) or a.isdigit() for a in assets)


@PROPS
@given(aggregate=st.none() | query_values, max_age=st.none() | query_values)
def test_price_options(aggregate: str | None, max_age: str | None) -> None:
    try:
        mode, seconds = parse_options(aggregate, max_age)
    except BadRequest:
        return
    assert mode in ("best", "median") and (seconds is None or 0 < seconds <= 86400)


CURSOR_KEY = b"deployment-key-" * 3

# ---- report filters, cursors, CSV cells --------------------------------------------------------

filter_names = st.sampled_from(
    [
        "format",
        "from",
        "to",
        "api_key_id",
        "endpoint",
        "asset",
        "protocol",
        "status",
        "granularity",
        "limit",
        "cursor",
        "api_key",
        "other",
    ]
)


@PROPS
@given(pairs=st.lists(st.tuples(filter_names, hostile_text | query_values), max_size=8))
def test_report_filters(pairs: list[tuple[str, str]]) -> None:
    try:
        f = parse_filters(pairs, time.time(), ReportLimits(), CURSOR_KEY)
    except ReportError as exc:
        assert str(exc)
        return
    assert f.start < f.end and 1 <= f.limit <= MAX_LIMIT
    for value in (f.api_key_id, f.endpoint, f.asset):  # only validated shapes ever reach SQL parameters
        assert value is None or (value.isascii() and "'" not in value and ";" not in value and " " not in value)


@PROPS
@given(
    cursor=hostile_text | st.tuples(hostile_text, st.text()).map(".".join),
    after=st.tuples(
        st.integers(0, 2**40),
        st.text(max_size=10),
        st.text(max_size=10),
        st.text(max_size=10),
        st.text(max_size=10),
        st.integers(100, 599),
    ),
)
def test_cursors(cursor: str, after: tuple) -> None:
    with pytest.raises(ReportError):
        decode_cursor(cursor, "fingerprint", key=CURSOR_KEY)
    good = encode_cursor(after, "fingerprint", key=CURSOR_KEY)
    assert decode_cursor(good, "fingerprint", key=CURSOR_KEY) == after
    body, mac = good.split(".")
    with pytest.raises(ReportError):
        decode_cursor(body + "." + ("0" if mac[0] != "0" else "1") + mac[1:], "fingerprint", key=CURSOR_KEY)


cells = hostile_text.filter(lambda s: ("\x00" not in s and s.isascii()) or s.isprintable()).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)  # never in a usage row: JSON and HTTP refuse them
) | st.sampled_from(["=1+1", "+cmd", "-2", "@x", "\t=1", "\r=1"])


@PROPS
@given(rows=st.lists(st.tuples(cells, cells, cells, cells), min_size=1, max_size=20))
def test_csv_and_tsv_never_carry_a_formula(rows: list[tuple[str, str, str, str]]) -> None:
    report_rows = [Row(60 * i, Group(k, e, a, p, 200), Counts(1, 10, 10)) for i, (k, e, a, p) in enumerate(rows)]
    parsed = list(csv.reader(io.StringIO(render_csv(report_rows).decode("utf-8"), newline="")))
    assert parsed[0] == list(COLUMNS) and len(parsed) == len(rows) + 1
    tsv_lines = render_tsv(report_rows).decode("utf-8").split("\n")[1:-1]
    assert len(tsv_lines) == len(rows)
    for cell in [c for line in parsed[1:] for c in line] + [c for line in tsv_lines for c in line.split("\t")]:
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell
    for line, (k, e, a, p) in zip(parsed[1:], rows, strict=False):  # nothing lost but the apostrophe
        assert [c.removeprefix("'") if c[:2] in ("'=", "'+", "'-", "'@", "'\t", "'\r") else c for c in line[1:5]] == [
            k,
            e,
            a,
            p,
        ]


# ---- CIDRs, settings, usage buckets -------------------------------------------------------------


@PROPS
@given(
    raw=hostile_text
    | st.from_regex(r"\A\d{1,3}(\.\d{1,3}){3}/\d{1,2}\Z")
    | st.ip_addresses(v=6).map(lambda a: f"{a}/64")
)
def test_cidrs_arbitrary(raw: str) -> None:
    try:
        net = parse_cidr(raw)
    except CidrError as exc:
        assert exc.status == 400
        return
    assert isinstance(net, ipaddress.IPv4Network) and str(net) == raw.strip()


@PROPS
@given(
    net=st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False))
    )
)
def test_cidrs_round_trip(net: ipaddress.IPv4Network) -> None:
    assert parse_cidr(str(net)) == net
    if net.prefixlen < 32:
        host = str(net.network_address + 1) + f"/{net.prefixlen}"
        with pytest.raises(CidrError, match="host bits are set"):
            parse_cidr(host)


SETTING_NAMES = [
    "BEAST_LPO_PORT",
    "BEAST_STALE_AFTER_S",
    "BEAST_USAGE_FLUSH_S",
    "REDIS_URL",
    "DATABASE_URL",
    "BEAST_EXCHANGE_PRIORITY",
    "BEAST_LOG_LEVEL",
    "BEAST_REGION",
    "APP_REPORT_SERVER",
    "BEAST_WS_MAX_PER_KEY",
    "BEAST_WS_MAX_PER_IP",
    "BEAST_KEY_CACHE_S",
    "BEAST_VPC_CIDR",
    # issue 13's limits
    "BEAST_REPORT_MAX_BUCKETS",
    "BEAST_REPORT_MAX_DAYS_MINUTE",
    "BEAST_REPORT_MAX_DAYS_MONTH",
    "BEAST_REPORT_TIMEOUT_S",
    "BEAST_MAX_CONNECTIONS",
    "BEAST_MAX_CONNECTIONS_PER_IP",
    "BEAST_BODY_TIMEOUT_S",
    "BEAST_UDP_AMPLIFICATION_FACTOR",
    "BEAST_TRUSTED_PROXIES",
    "BEAST_METRICS_NETWORKS",
    "BEAST_METRICS_TOKEN",
    "BEAST_CURSOR_KEY",
]


@PROPS
@given(env=st.dictionaries(st.sampled_from(SETTING_NAMES), hostile_text | query_values, max_size=4))
def test_settings(env: dict[str, str]) -> None:
    assume(all("\x00" not in v for v in env.values()))
    try:
        s = load_settings({"BEAST_IP_ADDRESS": "127.0.0.1", **env})
    except ConfigError as exc:
        assert str(exc).split(":")[0] in SETTING_NAMES
        return
    assert (
        isinstance(s, Settings) and 1 <= s.lpo_port <= 65535 and s.stale_after_s > 0 and math.isfinite(s.stale_after_s)
    )


@PROPS
@given(fields=st.dictionaries(hostile_text, st.integers(-(2**40), 2**40), max_size=10))
def test_usage_buckets(fields: dict[str, int]) -> None:
    for group, counts in parse_bucket(fields).items():
        assert isinstance(group.status, int) and counts.n != 0
