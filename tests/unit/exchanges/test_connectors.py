"""Pure parser tests for the six connectors: documented shapes and recorded messages."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from exchange_support import sample, sample_text
from hypothesis import given, settings
from hypothesis import strategies as st

from trinity_beast.exchanges import (
    ACK,
    CONNECTORS,
    ERROR,
    HEARTBEAT,
    INFO,
    UNKNOWN,
    UNKNOWN_SYMBOL,
    ConnState,
    ExchangeError,
)
from trinity_beast.exchanges.base import iso_to_s, to_price
from trinity_beast.exchanges.kraken import v2_symbol

RECV = 1_714_564_802.0


def state(exchange: str, *pairs: tuple[str, str, str]) -> ConnState:
    return CONNECTORS[exchange].new_state({sym: (asset, quote) for sym, asset, quote in pairs})


def parse(exchange: str, raw: Any, st_: ConnState):
    if isinstance(raw, (dict, list)):
        raw = json.dumps(raw)
    return CONNECTORS[exchange].parse(raw, RECV, st_)


def kinds(parsed) -> list[str]:
    return [e.kind for e in parsed.events]


# ---- shared helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("64000.12", Decimal("64000.12")),
        (64000.1, Decimal("64000.1")),
        (3, Decimal(3)),
        (Decimal("0.00001"), Decimal("0.00001")),
        ("0", None),
        ("-1", None),
        ("NaN", None),
        ("Infinity", None),
        (float("nan"), None),
        (float("inf"), None),
        ("", None),
        ("abc", None),
        (None, None),
        (True, None),
        ([1], None),
        ({"p": 1}, None),
        ("1" * 100, None),
    ],
)
def test_to_price(value: Any, expected: Decimal | None) -> None:
    assert to_price(value) == expected


def test_iso_timestamps_keep_sub_second_precision() -> None:
    assert iso_to_s("2024-05-01T12:00:01.123456789Z") == pytest.approx(1714564801.123456, abs=1e-6)
    assert iso_to_s("2024-05-01T12:00:01Z") == 1714564801.0
    assert iso_to_s("2024-05-01T14:00:01.5+02:00") == 1714564801.5
    assert iso_to_s("yesterday") is None and iso_to_s(None) is None and iso_to_s("2024-05-01T12:00:01") is None


# ---- Coinbase --------------------------------------------------------------------------------------

CB_TICKER = {
    "channel": "ticker",
    "client_id": "",
    "timestamp": "2024-05-01T12:00:01.5Z",
    "sequence_num": 2,
    "events": [
        {
            "type": "update",
            "tickers": [
                {
                    "type": "ticker",
                    "product_id": "BTC-USD",
                    "price": "64000.12",
                    "volume_24_h": "15000.5",
                    "low_24_h": "62000",
                    "high_24_h": "65000",
                    "low_52_w": "25000",
                    "high_52_w": "73800",
                    "price_percent_chg_24_h": "1.85",
                    "best_bid": "64000.11",
                    "best_bid_quantity": "0.5",
                    "best_ask": "64000.12",
                    "best_ask_quantity": "0.2",
                }
            ],
        }
    ],
}


def test_coinbase_subscribes_one_message_per_channel() -> None:
    msgs = [json.loads(m) for m in CONNECTORS["coinbase"].subscribe_messages(["BTC-USD", "ETH-USD"])]
    assert [m["channel"] for m in msgs] == ["ticker", "heartbeats"]
    assert all(m["type"] == "subscribe" and m["product_ids"] == ["BTC-USD", "ETH-USD"] for m in msgs)


def test_coinbase_ticker() -> None:
    p = parse("coinbase", CB_TICKER, state("coinbase", ("BTC-USD", "BTC", "USD")))
    assert p.events == [] and len(p.ticks) == 1
    t = p.ticks[0]
    assert (t.asset, t.quote, t.exchange, t.source) == ("BTC", "USD", "coinbase", "ws")
    assert (t.price, t.bid, t.ask) == (Decimal("64000.12"), Decimal("64000.11"), Decimal("64000.12"))
    assert t.exchange_ts == 1714564801.5 and t.received_ts == RECV and t.usd_rate is None


def test_coinbase_snapshot_with_several_tickers_and_optional_bid_ask() -> None:
    msg = json.loads(json.dumps(CB_TICKER))
    msg["events"] = [
        {
            "type": "snapshot",
            "tickers": [
                {"type": "ticker", "product_id": "BTC-USD", "price": "64000.12"},
                {
                    "type": "ticker",
                    "product_id": "ETH-USD",
                    "price": "3100.5",
                    "best_bid": "3100.4",
                    "best_ask": "3100.6",
                },
            ],
        }
    ]
    p = parse("coinbase", msg, state("coinbase", ("BTC-USD", "BTC", "USD"), ("ETH-USD", "ETH", "USD")))
    assert [(t.asset, t.price, t.bid) for t in p.ticks] == [
        ("BTC", Decimal("64000.12"), None),
        ("ETH", Decimal("3100.5"), Decimal("3100.4")),
    ]


def test_coinbase_control_messages() -> None:
    s = state("coinbase", ("BTC-USD", "BTC", "USD"))
    ack = {
        "channel": "subscriptions",
        "client_id": "",
        "timestamp": "2024-05-01T12:00:00.123456789Z",
        "sequence_num": 1,
        "events": [{"subscriptions": {"ticker": ["BTC-USD"]}}],
    }
    hb = {
        "channel": "heartbeats",
        "client_id": "",
        "timestamp": "2024-05-01T12:00:02Z",
        "sequence_num": 3,
        "events": [{"current_time": "2024-05-01 12:00:02.1 +0000 UTC m=+91717.5", "heartbeat_counter": "3049"}],
    }
    assert kinds(parse("coinbase", ack, s)) == [ACK]
    assert kinds(parse("coinbase", hb, s)) == [HEARTBEAT]
    rejected = parse(
        "coinbase", {"type": "error", "message": "Failed to subscribe", "reason": "FOO-USD is not a valid product"}, s
    )
    assert [(e.kind, e.symbol) for e in rejected.events] == [(UNKNOWN_SYMBOL, "FOO-USD")]
    assert "not a valid product" in rejected.events[0].text
    assert kinds(parse("coinbase", {"type": "error", "message": "authentication failure"}, s)) == [ERROR]


def test_coinbase_exchange_feed_recordings_are_reported_not_parsed() -> None:
    # The institutional feed's flat ticker is a different protocol: report it, never crash.
    s = state("coinbase", ("BAND-GBP", "BAND", "USD"))
    for name in ("coinbase_exchange_ticker_update.json", "coinbase_exchange_subscribe_ack.json"):
        p = parse("coinbase", sample_text(name), s)
        assert p.ticks == [] and kinds(p) == [UNKNOWN]


def test_coinbase_rest() -> None:
    c = CONNECTORS["coinbase"]
    req = c.ticker_request("BTC-USD")
    assert req.path == "/market/products/BTC-USD/ticker" and req.params == {"limit": "1"}
    body = json.dumps(
        {
            "trades": [
                {
                    "trade_id": "635541194",
                    "product_id": "BTC-USD",
                    "price": "66363.03",
                    "size": "0.037",
                    "time": "2024-04-24T09:56:38.063595Z",
                    "side": "BUY",
                    "bid": "",
                    "ask": "",
                }
            ],
            "best_bid": "66367.58",
            "best_ask": "66367.59",
        }
    )
    t = c.parse_ticker(body, "BTC", "USD", RECV)
    assert (t.price, t.bid, t.ask, t.source) == (Decimal("66363.03"), Decimal("66367.58"), Decimal("66367.59"), "rest")
    assert t.exchange_ts == pytest.approx(1713952598.063595)
    with pytest.raises(ExchangeError, match="ProductID is invalid"):
        c.parse_ticker('{"error":"NOT_FOUND","message":"ProductID is invalid"}', "BTC", "USD", RECV)
    with pytest.raises(ExchangeError):
        c.parse_ticker('{"trades": []}', "BTC", "USD", RECV)
    products = {
        "products": [
            {"product_id": "BTC-USD", "product_type": "SPOT", "trading_disabled": False, "is_disabled": False},
            {"product_id": "OLD-USD", "product_type": "SPOT", "trading_disabled": True},
            {"product_id": "BIT-PERP", "product_type": "FUTURE"},
        ],
        "num_products": 3,
    }
    assert c.parse_instruments(json.dumps(products)) == {"BTC-USD"}


# ---- Kraken -------------------------------------------------------------------------------------------


def test_kraken_subscribe_message() -> None:
    [msg] = [json.loads(m) for m in CONNECTORS["kraken"].subscribe_messages(["BTC/USD", "DOGE/USD"])]
    assert msg["method"] == "subscribe" and msg["params"]["channel"] == "ticker"
    assert msg["params"]["symbol"] == ["BTC/USD", "DOGE/USD"] and isinstance(msg["req_id"], int)


def test_kraken_ticker_numbers_are_exact() -> None:
    raw = (
        '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":64000.1,"bid_qty":0.5,"ask":64000.2,'
        '"ask_qty":1.2,"last":12345678901234567.89,"volume":2158.3,"vwap":63890.5,"low":62824.0,"high":65300.0,'
        '"change":-679.9,"change_pct":-1.05}]}'
    )
    p = parse("kraken", raw, state("kraken", ("BTC/USD", "BTC", "USD")))
    [t] = p.ticks
    assert t.price == Decimal("12345678901234567.89")  # a float would have lost digits
    assert (t.bid, t.ask) == (Decimal("64000.1"), Decimal("64000.2"))
    assert t.exchange_ts == RECV  # no exchange time in the v2 ticker


def test_kraken_snapshot_and_optional_timestamp() -> None:
    raw = (
        '{"channel":"ticker","type":"snapshot","data":[{"symbol":"DOGE/USD","bid":0.1234,"ask":0.1236,"last":0.1235,'
        '"timestamp":"2024-05-01T12:00:01.250000Z"}]}'
    )
    [t] = parse("kraken", raw, state("kraken", ("DOGE/USD", "DOGE", "USD"))).ticks
    assert (t.asset, t.price, t.exchange_ts) == ("DOGE", Decimal("0.1235"), 1714564801.25)


def test_kraken_control_messages() -> None:
    s = state("kraken", ("BTC/USD", "BTC", "USD"))
    status = {
        "channel": "status",
        "type": "update",
        "data": [{"version": "2.0.x", "system": "online", "api_version": "v2", "connection_id": 123456789}],
    }
    ack = {
        "method": "subscribe",
        "req_id": 42,
        "success": True,
        "result": {"channel": "ticker", "event_trigger": "trades", "snapshot": True, "symbol": "BTC/USD"},
        "time_in": "2024-05-01T12:00:00.123456Z",
        "time_out": "2024-05-01T12:00:00.124001Z",
    }
    assert kinds(parse("kraken", status, s)) == [INFO]
    assert kinds(parse("kraken", ack, s)) == [ACK]
    assert kinds(parse("kraken", {"channel": "heartbeat"}, s)) == [HEARTBEAT]
    assert kinds(parse("kraken", {"method": "pong", "req_id": 7, "time_in": "x", "time_out": "y"}, s)) == [HEARTBEAT]
    err = {
        "method": "subscribe",
        "success": False,
        "error": "Currency pair not supported FOO/USD",
        "symbol": "FOO/USD",
        "req_id": 42,
        "time_in": "x",
        "time_out": "y",
    }
    assert [(e.kind, e.symbol) for e in parse("kraken", err, s).events] == [(UNKNOWN_SYMBOL, "FOO/USD")]
    del err["symbol"]  # whether the symbol is echoed is unconfirmed: read it from the text
    assert [(e.kind, e.symbol) for e in parse("kraken", err, s).events] == [(UNKNOWN_SYMBOL, "FOO/USD")]
    other = {"method": "subscribe", "success": False, "error": "Rate limit exceeded", "req_id": 1}
    assert kinds(parse("kraken", other, s)) == [ERROR]


def test_kraken_v1_recordings_are_reported_not_parsed() -> None:
    s = state("kraken", ("BTC/CHF", "BTC", "USD"))
    for name in ("kraken_v1_ticker_update.json", "kraken_v1_heartbeat.json", "kraken_v1_system_status.json"):
        p = parse("kraken", sample_text(name), s)
        assert p.ticks == [] and p.events and kinds(p)[0] in (UNKNOWN, ERROR)


def test_kraken_rest_ticker_takes_the_only_result_key() -> None:
    c = CONNECTORS["kraken"]
    assert c.ticker_request("XBTUSD").path == "/0/public/Ticker"
    assert c.ticker_request("XBTUSD").params == {"pair": "XBTUSD"}
    body = json.dumps({"error": [], "result": sample("kraken_rest_ticker_result_object.json")})
    t = c.parse_ticker(body, "BTC", "USD", RECV)
    assert (t.price, t.bid, t.ask) == (Decimal("27947.90000"), Decimal("27947.90000"), Decimal("27948.00000"))
    with pytest.raises(ExchangeError, match="Unknown asset pair"):
        c.parse_ticker('{"error":["EQuery:Unknown asset pair"]}', "BTC", "USD", RECV)
    with pytest.raises(ExchangeError):
        c.parse_ticker('{"error":[],"result":{}}', "BTC", "USD", RECV)


def test_kraken_asset_pairs_use_v2_names() -> None:
    pairs = CONNECTORS["kraken"].parse_instruments(sample_text("kraken_rest_assetpairs_response.json"))
    assert {"BTC/USD", "DOGE/USD", "ETH/USD", "USDT/USD", "USDC/USD"} <= pairs
    assert not any(p.startswith(("XBT/", "XDG/")) for p in pairs)
    assert v2_symbol("XBT/EUR") == "BTC/EUR" and v2_symbol("ETH/XBT") == "ETH/BTC"


# ---- Gemini -------------------------------------------------------------------------------------------


def test_gemini_subscribe_message() -> None:
    [msg] = [json.loads(m) for m in CONNECTORS["gemini"].subscribe_messages(["BTCUSD", "ETHUSD"])]
    assert msg == {"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": ["BTCUSD", "ETHUSD"]}]}


def test_gemini_recorded_snapshot_then_trade() -> None:
    snap = sample("gemini_v2_l2_initial_snapshot.json")
    s = state("gemini", ("FILUSD", "FIL", "USD"))
    p = parse("gemini", snap, s)
    [t] = p.ticks
    newest = max(snap["trades"], key=lambda x: (x["timestamp"], x["event_id"]))
    best_bid = max(Decimal(c[1]) for c in snap["changes"] if c[0] == "buy")
    best_ask = min(Decimal(c[1]) for c in snap["changes"] if c[0] == "sell")
    assert (t.price, t.bid, t.ask) == (Decimal(newest["price"]), best_bid, best_ask)
    assert t.bid < t.ask and t.exchange_ts == newest["timestamp"] / 1000
    trade = sample("gemini_v2_trade_update.json")
    [t2] = parse("gemini", trade, s).ticks
    assert (t2.price, t2.bid, t2.ask, t2.exchange_ts) == (Decimal("58.4998"), best_bid, best_ask, 1624493681.030)


def test_gemini_book_updates_move_bid_and_ask() -> None:
    s = state("gemini", ("BTCUSD", "BTC", "USD"))
    snap = {
        "type": "l2_updates",
        "symbol": "BTCUSD",
        "changes": [["buy", "63999.50", "0.25"], ["buy", "63999.00", "1"], ["sell", "64000.10", "1.1"]],
        "trades": [
            {
                "type": "trade",
                "symbol": "BTCUSD",
                "event_id": 1,
                "timestamp": 1714564800123,
                "price": "64000.00",
                "quantity": "0.001",
                "side": "buy",
            }
        ],
        "auction_events": [],
    }
    [t] = parse("gemini", snap, s).ticks
    assert (t.price, t.bid, t.ask) == (Decimal("64000.00"), Decimal("63999.50"), Decimal("64000.10"))
    # Removing the best bid exposes the next level; quantities with another spelling still match.
    [t] = parse("gemini", {"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "63999.5", "0"]]}, s).ticks
    assert (t.price, t.bid, t.exchange_ts) == (Decimal("64000.00"), Decimal("63999.00"), RECV)
    # A change below the top of book emits nothing.
    assert (
        parse("gemini", {"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "63000", "3"]]}, s).ticks == []
    )
    # An older trade does not replace the newest price.
    old = {
        "type": "trade",
        "symbol": "BTCUSD",
        "event_id": 0,
        "timestamp": 1714564700000,
        "price": "1.0",
        "quantity": "1",
        "side": "buy",
    }
    assert parse("gemini", old, s).ticks == []
    # Books are per connection: a fresh state starts empty.
    fresh = state("gemini", ("BTCUSD", "BTC", "USD"))
    [t] = parse("gemini", {**old, "event_id": 5}, fresh).ticks
    assert (t.price, t.bid, t.ask) == (Decimal("1.0"), None, None)


def test_gemini_control_and_errors() -> None:
    s = state("gemini", ("BTCUSD", "BTC", "USD"), ("FOOUSD", "FOO", "USD"))
    assert kinds(parse("gemini", sample_text("gemini_v2_heartbeat.json"), s)) == [HEARTBEAT]
    bad = parse("gemini", {"result": "error", "reason": "InvalidSymbol", "message": "Invalid symbol: FOOUSD"}, s)
    assert [(e.kind, e.symbol) for e in bad.events] == [(UNKNOWN_SYMBOL, "FOOUSD")]
    assert kinds(parse("gemini", {"reason": "RateLimit", "message": "slow down"}, s)) == [ERROR]
    assert kinds(parse("gemini", {"type": "auction_open", "symbol": "BTCUSD"}, s)) == [INFO]
    malformed = parse("gemini", {"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "x", "1"], "oops"]}, s)
    assert malformed.ticks == [] and kinds(malformed) == [ERROR]


def test_gemini_rest() -> None:
    c = CONNECTORS["gemini"]
    assert c.ticker_request("BTCUSD").path == "/v1/pubticker/btcusd"
    body = '{"bid":"64000.1","ask":"64000.3","last":"64000.2","volume":{"BTC":"3.54","USD":"226620.2","timestamp":"1714564800000"}}'
    t = c.parse_ticker(body, "BTC", "USD", RECV)
    assert (t.price, t.bid, t.ask, t.exchange_ts) == (
        Decimal("64000.2"),
        Decimal("64000.1"),
        Decimal("64000.3"),
        1714564800.0,
    )
    with pytest.raises(ExchangeError, match="InvalidSymbol"):
        c.parse_ticker('{"result":"error","reason":"InvalidSymbol","message":"bad"}', "BTC", "USD", RECV)
    symbols = c.parse_instruments(sample_text("gemini_rest_symbols_response.json"))
    assert {"BTCUSD", "ETHUSD", "DOGEUSD"} <= symbols


# ---- Gate.io ----------------------------------------------------------------------------------------------


def test_gateio_subscribe_and_keepalive() -> None:
    c = CONNECTORS["gateio"]
    [msg] = [json.loads(m) for m in c.subscribe_messages(["BTC_USDT"])]
    assert (msg["channel"], msg["event"], msg["payload"]) == ("spot.tickers", "subscribe", ["BTC_USDT"])
    assert abs(msg["time"] - __import__("time").time()) < 5
    ping = json.loads(c.keepalive_message())
    assert ping["channel"] == "spot.ping" and isinstance(ping["time"], int) and c.keepalive_interval


def test_gateio_ticker_current_and_recorded() -> None:
    s = state("gateio", ("BTC_USDT", "BTC", "USDT"), ("NEO_BTC", "NEO", "USDT"))
    msg = {
        "time": 1714564801,
        "time_ms": 1714564801234,
        "channel": "spot.tickers",
        "event": "update",
        "result": {
            "currency_pair": "BTC_USDT",
            "last": "64000.2",
            "lowest_ask": "64000.3",
            "highest_bid": "64000.1",
            "change_percentage": "-1.2",
            "base_volume": "1138.9",
            "quote_volume": "72889600.1",
            "high_24h": "65000",
            "low_24h": "62000",
        },
    }
    [t] = parse("gateio", msg, s).ticks
    assert (t.quote, t.price, t.bid, t.ask, t.exchange_ts) == (
        "USDT",
        Decimal("64000.2"),
        Decimal("64000.1"),
        Decimal("64000.3"),
        1714564801.234,
    )
    [old] = parse("gateio", sample_text("gateio_ticker_update.json"), s).ticks  # no time_ms: falls back to time
    assert (old.price, old.exchange_ts) == (Decimal("0.0018716"), 1619093533.0)


def test_gateio_control_and_errors() -> None:
    s = state("gateio", ("BTC_USDT", "BTC", "USDT"))
    assert kinds(parse("gateio", sample_text("gateio_subscribe_ack.json"), s)) == [ACK]
    ack = {
        "time": 1714564800,
        "time_ms": 1714564800123,
        "id": 1,
        "channel": "spot.tickers",
        "event": "subscribe",
        "error": None,
        "result": {"status": "success"},
    }
    assert kinds(parse("gateio", ack, s)) == [ACK]
    pong = {
        "time": 1714564800,
        "time_ms": 1714564800000,
        "channel": "spot.pong",
        "event": "",
        "error": None,
        "result": None,
    }
    assert kinds(parse("gateio", pong, s)) == [HEARTBEAT]
    err = {
        "time": 1,
        "channel": "spot.tickers",
        "event": "subscribe",
        "error": {"code": 2, "message": "unknown currency pair FOO_USDT"},
        "result": {"status": "fail"},
    }
    assert [(e.kind, e.symbol) for e in parse("gateio", err, s).events] == [(UNKNOWN_SYMBOL, "FOO_USDT")]
    auth = {
        "time": 1,
        "channel": "spot.tickers",
        "event": "subscribe",
        "error": {"code": 4, "message": "authentication failed"},
    }
    assert kinds(parse("gateio", auth, s)) == [ERROR]
    upgrade = {"type": "upgrade", "msg": "The connection will soon be closed for a service upgrade. Please reconnect."}
    assert kinds(parse("gateio", upgrade, s)) == [INFO]


def test_gateio_rest() -> None:
    c = CONNECTORS["gateio"]
    req = c.ticker_request("BTC_USDT")
    assert (req.path, req.params) == ("/spot/tickers", {"currency_pair": "BTC_USDT"})
    body = '[{"currency_pair":"BTC_USDT","last":"64000.2","lowest_ask":"64000.3","highest_bid":"64000.1","change_percentage":"0.28"}]'
    t = c.parse_ticker(body, "BTC", "USDT", RECV)
    assert (t.price, t.quote, t.exchange_ts) == (Decimal("64000.2"), "USDT", RECV)
    with pytest.raises(ExchangeError, match="INVALID_CURRENCY_PAIR"):
        c.parse_ticker('{"label":"INVALID_CURRENCY_PAIR","message":"Invalid currency pair"}', "BTC", "USDT", RECV)
    pairs = c.parse_instruments(sample_text("gateio_rest_currency_pairs_response.json"))
    assert {"BTC_USDT", "ETH_USDT"} <= pairs and len(pairs) > 500


# ---- Crypto.com -------------------------------------------------------------------------------------------


def test_cryptocom_subscribe_waits_and_batches() -> None:
    c = CONNECTORS["cryptocom"]
    assert c.connect_delay == pytest.approx(1.0)
    msgs = [json.loads(m) for m in c.subscribe_messages([f"A{i}_USD" for i in range(120)])]
    assert all(m["method"] == "subscribe" and isinstance(m["nonce"], int) for m in msgs)
    channels = [ch for m in msgs for ch in m["params"]["channels"]]
    assert channels[0] == "ticker.A0_USD" and len(channels) == 120 and len(msgs) == 3


def test_cryptocom_ticker() -> None:
    s = state("cryptocom", ("BTC_USD", "BTC", "USD"))
    msg = {
        "id": -1,
        "method": "subscribe",
        "code": 0,
        "result": {
            "instrument_name": "BTC_USD",
            "subscription": "ticker.BTC_USD",
            "channel": "ticker",
            "data": [
                {
                    "h": "65000.00",
                    "l": "62000.00",
                    "a": "64000.20",
                    "c": "-0.0122",
                    "b": "64000.10",
                    "bs": "0.5000",
                    "k": "64000.30",
                    "ks": "0.2000",
                    "i": "BTC_USD",
                    "v": "879.5024",
                    "vv": "56290000.12",
                    "oi": "0",
                    "t": 1714564801234,
                }
            ],
        },
    }
    [t] = parse("cryptocom", msg, s).ticks
    assert (t.price, t.bid, t.ask, t.exchange_ts) == (
        Decimal("64000.20"),
        Decimal("64000.10"),
        Decimal("64000.30"),
        1714564801.234,
    )
    msg["result"]["data"][0]["a"] = None  # no trades yet
    p = parse("cryptocom", msg, s)
    assert p.ticks == [] and kinds(p) == [ERROR]


def test_cryptocom_heartbeat_is_answered_with_the_same_id() -> None:
    s = state("cryptocom", ("BTC_USD", "BTC", "USD"))
    p = parse("cryptocom", {"id": 1714564830000, "method": "public/heartbeat", "code": 0}, s)
    assert kinds(p) == [HEARTBEAT]
    assert [json.loads(r) for r in p.replies] == [{"id": 1714564830000, "method": "public/respond-heartbeat"}]


def test_cryptocom_acks_and_errors() -> None:
    s = state("cryptocom", ("BTC_USD", "BTC", "USD"), ("FOO_USD", "FOO", "USD"))
    assert kinds(parse("cryptocom", {"id": 1, "method": "subscribe", "code": 0}, s)) == [ACK]
    bad = {
        "id": 1,
        "method": "subscribe",
        "code": 10004,
        "message": "invalid channel ticker.FOO_USD",
        "channel": "ticker.FOO_USD",
    }
    assert [(e.kind, e.symbol) for e in parse("cryptocom", bad, s).events] == [(UNKNOWN_SYMBOL, "FOO_USD")]
    assert kinds(parse("cryptocom", {"id": 1, "method": "subscribe", "code": 10004, "message": "BAD_REQUEST"}, s)) == [
        ERROR
    ]


def test_cryptocom_rest() -> None:
    c = CONNECTORS["cryptocom"]
    req = c.ticker_request("BTC_USD")
    assert (req.path, req.params) == ("/public/get-tickers", {"instrument_name": "BTC_USD"})
    body = json.dumps(
        {
            "id": -1,
            "method": "public/get-tickers",
            "code": 0,
            "result": {
                "data": [
                    {
                        "h": "65000",
                        "l": "62000",
                        "a": "64000.2",
                        "c": "0.01",
                        "b": "64000.1",
                        "k": "64000.3",
                        "i": "BTC_USD",
                        "v": "1",
                        "t": 1714564801234,
                    }
                ]
            },
        }
    )
    t = c.parse_ticker(body, "BTC", "USD", RECV)
    assert (t.price, t.ask, t.exchange_ts) == (Decimal("64000.2"), Decimal("64000.3"), 1714564801.234)
    with pytest.raises(ExchangeError, match="10004"):
        c.parse_ticker('{"id":-1,"code":10004,"message":"BAD_REQUEST"}', "BTC", "USD", RECV)
    legacy = c.parse_instruments(sample_text("cryptocom_legacy_v2_rest_get_instruments_response.json"))
    assert {"BTC_USDT", "ETH_USDT"} <= legacy
    v1 = {
        "code": 0,
        "result": {
            "data": [
                {"symbol": "BTC_USD", "inst_type": "CCY_PAIR", "tradable": True},
                {"symbol": "BTCUSD-PERP", "inst_type": "PERPETUAL_SWAP", "tradable": True},
                {"symbol": "OLD_USD", "inst_type": "CCY_PAIR", "tradable": False},
            ]
        },
    }
    assert c.parse_instruments(json.dumps(v1)) == {"BTC_USD"}


# ---- OKX ------------------------------------------------------------------------------------------------------


def test_okx_subscribe_and_keepalive() -> None:
    c = CONNECTORS["okx"]
    [msg] = [json.loads(m) for m in c.subscribe_messages(["BTC-USDT", "ETH-USDT"])]
    assert msg == {
        "op": "subscribe",
        "args": [{"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "tickers", "instId": "ETH-USDT"}],
    }
    assert c.keepalive_message() == "ping" and c.keepalive_interval < 30
    assert len(c.subscribe_messages([f"A{i}-USDT" for i in range(250)])) == 3


def test_okx_recorded_ticker_and_ack() -> None:
    s = state("okx", ("BTC-USDT", "BTC", "USDT"))
    [t] = parse("okx", sample_text("okx_ticker_update.json"), s).ticks
    assert (t.asset, t.quote, t.price, t.bid, t.ask) == (
        "BTC",
        "USDT",
        Decimal("30236"),
        Decimal("30228.6"),
        Decimal("30228.7"),
    )
    assert t.exchange_ts == 1652459224.956
    assert kinds(parse("okx", sample_text("okx_subscribe_ack.json"), s)) == [ACK]


def test_okx_pong_errors_and_notices() -> None:
    s = state("okx", ("BTC-USDT", "BTC", "USDT"))
    assert kinds(parse("okx", "pong", s)) == [HEARTBEAT]
    assert kinds(parse("okx", b"pong", s)) == [HEARTBEAT]
    err = {
        "event": "error",
        "code": "60018",
        "msg": "channel:tickers,instId:BTC-USD doesn't exist",
        "connId": "a4d3ae55",
    }
    assert [(e.kind, e.symbol) for e in parse("okx", err, s).events] == [(UNKNOWN_SYMBOL, "BTC-USD")]
    bad = {"event": "error", "code": "60012", "msg": 'Invalid request: {"op": "subscr"}', "connId": "a4d3ae55"}
    assert kinds(parse("okx", bad, s)) == [ERROR]
    notice = {
        "event": "notice",
        "code": "64008",
        "msg": "The connection will soon be closed for a service upgrade.",
        "connId": "x",
    }
    assert kinds(parse("okx", notice, s)) == [INFO]


def test_okx_rest() -> None:
    c = CONNECTORS["okx"]
    req = c.ticker_request("BTC-USDT")
    assert (req.path, req.params) == ("/api/v5/market/ticker", {"instId": "BTC-USDT"})
    push = sample("okx_ticker_update.json")
    t = c.parse_ticker(json.dumps({"code": "0", "msg": "", "data": push["data"]}), "BTC", "USDT", RECV)
    assert (t.price, t.exchange_ts, t.source) == (Decimal("30236"), 1652459224.956, "rest")
    with pytest.raises(ExchangeError, match="51001"):
        c.parse_ticker('{"code":"51001","msg":"Instrument ID does not exist","data":[]}', "BTC", "USDT", RECV)
    inst = c.parse_instruments(sample_text("okx_rest_instruments_spot_response.json"))
    assert {"BTC-USDT", "ETH-USDT", "USDC-USDT"} <= inst and "BTC-USD" not in inst


# ---- every connector: bad input never raises, never yields a tick -------------------------------------------

GARBAGE: list[str | bytes] = [
    "",
    "not json",
    "{",
    b"\xff\xfe\x00",
    "[]",
    "null",
    "42",
    '"text"',
    "{}",
    '{"a": 1}',
    "[" * 5000 + "]" * 5000,
    '{"channel":"ticker","events":"x"}',
    '{"channel":"ticker","data":5}',
    '{"type":"l2_updates","symbol":"BTCUSD","changes":7}',
    '{"method":"subscribe","result":{"channel":"ticker","data":{"a":"1"}}}',
    '{"arg":{"channel":"tickers"},"data":[7]}',
    '{"channel":"spot.tickers","event":"update","result":"x"}',
    '{"type":"trade","symbol":5,"price":"1"}',
]


@pytest.mark.parametrize("exchange", list(CONNECTORS))
@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_reported_not_raised(exchange: str, raw: str | bytes) -> None:
    s = state(
        exchange, *[(sym, "BTC", "USD") for sym in ("BTC-USD", "BTC/USD", "BTCUSD", "BTC_USDT", "BTC_USD", "BTC-USDT")]
    )
    p = CONNECTORS[exchange].parse(raw, RECV, s)
    assert p.ticks == [] and p.replies == []
    assert p.events and all(e.kind in (ERROR, UNKNOWN) for e in p.events)


def _ticker(exchange: str, price: Any) -> str:
    """One ticker frame per exchange carrying `price` verbatim (JSON-encoded)."""
    p = json.dumps(price)
    return {
        "coinbase": f'{{"channel":"ticker","timestamp":"2024-05-01T12:00:01Z","events":[{{"type":"update","tickers":[{{"product_id":"BTC-USD","price":{p}}}]}}]}}',
        "kraken": f'{{"channel":"ticker","type":"update","data":[{{"symbol":"BTC/USD","last":{p},"bid":1,"ask":2}}]}}',
        "gemini": f'{{"type":"trade","symbol":"BTCUSD","event_id":1,"timestamp":1714564800000,"price":{p},"quantity":"1","side":"buy"}}',
        "gateio": f'{{"time":1,"channel":"spot.tickers","event":"update","result":{{"currency_pair":"BTC_USDT","last":{p}}}}}',
        "cryptocom": f'{{"id":-1,"method":"subscribe","code":0,"result":{{"channel":"ticker","data":[{{"i":"BTC_USD","a":{p},"t":1}}]}}}}',
        "okx": f'{{"arg":{{"channel":"tickers","instId":"BTC-USDT"}},"data":[{{"instId":"BTC-USDT","last":{p},"ts":"1"}}]}}',
    }[exchange]


BAD_PRICES = ["0", "-1", "NaN", "Infinity", "-Infinity", "", "abc", None, True, [], {}, 0, -5]


@pytest.mark.parametrize("exchange", list(CONNECTORS))
@pytest.mark.parametrize("price", BAD_PRICES, ids=[repr(p) for p in BAD_PRICES])
def test_unusable_prices_are_rejected(exchange: str, price: Any) -> None:
    s = state(
        exchange, *[(sym, "BTC", "USD") for sym in ("BTC-USD", "BTC/USD", "BTCUSD", "BTC_USDT", "BTC_USD", "BTC-USDT")]
    )
    p = CONNECTORS[exchange].parse(_ticker(exchange, price), RECV, s)
    assert p.ticks == [] and p.events


@pytest.mark.parametrize("exchange", list(CONNECTORS))
def test_good_price_through_the_same_frames(exchange: str) -> None:
    s = state(
        exchange, *[(sym, "BTC", "USD") for sym in ("BTC-USD", "BTC/USD", "BTCUSD", "BTC_USDT", "BTC_USD", "BTC-USDT")]
    )
    price: Any = 64000.5 if exchange == "kraken" else "64000.5"
    [t] = CONNECTORS[exchange].parse(_ticker(exchange, price), RECV, s).ticks
    assert t.price == Decimal("64000.5") and t.exchange == exchange


def test_kraken_rejects_non_finite_json_constants() -> None:
    s = state("kraken", ("BTC/USD", "BTC", "USD"))
    p = parse("kraken", '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","last":NaN}]}', s)
    assert p.ticks == [] and kinds(p) == [ERROR]


def test_ticker_for_a_symbol_not_subscribed_is_reported() -> None:
    s = state("okx", ("BTC-USDT", "BTC", "USDT"))
    p = parse(
        "okx",
        {"arg": {"channel": "tickers", "instId": "ETH-USDT"}, "data": [{"instId": "ETH-USDT", "last": "1", "ts": "1"}]},
        s,
    )
    assert p.ticks == [] and kinds(p) == [UNKNOWN]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "channel",
                    "type",
                    "event",
                    "method",
                    "data",
                    "events",
                    "tickers",
                    "result",
                    "arg",
                    "symbol",
                    "product_id",
                    "price",
                    "last",
                    "a",
                    "code",
                    "changes",
                    "trades",
                    "error",
                    "id",
                    "instId",
                    "x",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("exchange", list(CONNECTORS))
@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_fuzzed_json_never_raises(exchange: str, value: Any) -> None:
    s = state(exchange, ("BTC-USD", "BTC", "USD"))
    p = CONNECTORS[exchange].parse(json.dumps(value), RECV, s)
    assert all(t.price > 0 for t in p.ticks)


@pytest.mark.parametrize("exchange", list(CONNECTORS))
def test_rest_garbage_raises_exchange_error(exchange: str) -> None:
    c = CONNECTORS[exchange]
    for body in ("<html>oops", "", "[]", "{}", "null", '{"data": 5}'):
        with pytest.raises(ExchangeError):
            c.parse_ticker(body, "BTC", "USD", RECV)
    with pytest.raises(ExchangeError):
        c.parse_instruments("<html>")
