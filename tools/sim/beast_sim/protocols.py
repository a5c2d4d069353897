"""The six exchanges' WebSocket protocols, as the simulator speaks them.

Each protocol turns client frames into answers (acks, first snapshots, error frames for
unknown symbols) and builds the periodic updates and heartbeats, using the message
shapes documented in shared/exchange-protocols.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import itertools
import json
import random
import time
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from trinity_beast.domain.assets import Instrument
from beast_sim.prices import fmt

if TYPE_CHECKING:
    from beast_sim.server import Simulator

_conn_ids = itertools.count(1)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# Seconds the current exchange's clock is off (Simulator.set_clock_skew); set per session task.
CLOCK_SKEW: ContextVar[float] = ContextVar("sim_clock_skew", default=0.0)


def exchange_time() -> float:
    """The simulated exchange's own clock: ours plus its skew."""
    return time.time() + CLOCK_SKEW.get()


def now_ms() -> int:
    return int(exchange_time() * 1000)


def rfc3339_ns(ts: float | None = None) -> str:
    """Coinbase's envelope time: RFC 3339 with nanoseconds."""
    ts = exchange_time() if ts is None else ts
    dt = datetime.fromtimestamp(ts, timezone.utc)
    ns = int(round((ts % 1) * 1e9)) % 1_000_000_000
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ns:09d}Z"


def rfc3339_us(ts: float | None = None) -> str:
    ts = exchange_time() if ts is None else ts
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SimSession:
    """One client connection: what it subscribed to and its protocol state."""

    def __init__(self, exchange: str, sim: "Simulator") -> None:
        self.exchange = exchange
        self.sim = sim
        self.subscribed: dict[str, Instrument] = {}
        self.extra: dict[str, Any] = {}
        self.opened = time.monotonic()
        self.kill = False  # set by Simulator.drop(): close at the next push
        self.heartbeats = False  # Coinbase: subscribed to the heartbeats channel
        self.pending_heartbeat: tuple[Any, float] | None = None  # Crypto.com: (id, deadline)
        self.conn_id = f"{next(_conn_ids):08x}"
        self._seq = itertools.count(1)

    def seq(self) -> int:
        return next(self._seq)

    def lookup(self, symbol: Any) -> Instrument | None:
        """The instrument for a symbol the exchange would accept, else None."""
        if not isinstance(symbol, str):
            return None
        return self.sim.instrument(self.exchange, symbol)

    def quote(self, inst: Instrument) -> tuple[str, str, str]:
        return self.sim.prices.quote(inst.asset, inst.quote, self.exchange)


class SimProtocol(ABC):
    name = ""
    heartbeat_s: float | None = None  # server heartbeat period (overridable per simulator)
    subscribe_deadline_s: float | None = None  # close if nothing subscribed by then

    def on_connect(self, s: SimSession) -> list[str]:
        return []

    @abstractmethod
    def on_text(self, s: SimSession, text: str) -> list[str]:
        ...

    @abstractmethod
    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        ...

    def heartbeat(self, s: SimSession) -> list[str]:
        return []

    @abstractmethod
    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        """A well-formed frame with an unusable price, for garbage mode."""
        ...


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except ValueError:
        return None


# ---- Coinbase Advanced Trade ------------------------------------------------------------


class CoinbaseSim(SimProtocol):
    name = "coinbase"
    heartbeat_s = 1.0
    subscribe_deadline_s = 5.0

    def _ticker(self, s: SimSession, inst: Instrument, price: str | None = None) -> dict[str, Any]:
        last, bid, ask = s.quote(inst)
        return {
            "type": "ticker", "product_id": inst.symbol, "price": price or last,
            "volume_24_h": "15000.5", "low_24_h": last, "high_24_h": last, "low_52_w": last, "high_52_w": last,
            "price_percent_chg_24_h": "0.5", "best_bid": bid, "best_bid_quantity": "0.5",
            "best_ask": ask, "best_ask_quantity": "0.2",
        }

    def _envelope(self, s: SimSession, channel: str, events: list[Any]) -> str:
        return dumps({"channel": channel, "client_id": "", "timestamp": rfc3339_ns(), "sequence_num": s.seq(), "events": events})

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = _json(text)
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            return [dumps({"type": "error", "message": "Failed to parse message"})]
        channel = msg.get("channel")
        products = msg.get("product_ids") or []
        if channel not in ("ticker", "heartbeats") or not isinstance(products, list):
            return [dumps({"type": "error", "message": f"Failed to subscribe: unsupported channel {channel!r}"})]
        out: list[str] = []
        if msg["type"] == "unsubscribe":
            if channel == "heartbeats":
                s.heartbeats = False
            for p in products:
                s.subscribed.pop(p, None)
        elif channel == "heartbeats":
            s.heartbeats = True
        else:
            new: list[Instrument] = []
            for p in products:
                inst = s.lookup(p)
                if inst is None:
                    out.append(dumps({"type": "error", "message": "Failed to subscribe", "reason": f"{p} is not a valid product"}))
                elif p not in s.subscribed:
                    s.subscribed[p] = inst
                    new.append(inst)
            if new:
                out.append(self._envelope(s, "ticker", [{"type": "snapshot", "tickers": [self._ticker(s, i) for i in new]}]))
        subs = {"ticker": list(s.subscribed)}
        if s.heartbeats:
            subs["heartbeats"] = ["heartbeats"]
        out.insert(0, self._envelope(s, "subscriptions", [{"subscriptions": subs}]))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        tickers = [self._ticker(s, s.subscribed[sym]) for sym in symbols]
        return [self._envelope(s, "ticker", [{"type": "update", "tickers": tickers}])]

    def heartbeat(self, s: SimSession) -> list[str]:
        if not s.heartbeats:
            return []
        counter = s.extra["hb"] = s.extra.get("hb", 0) + 1
        now = datetime.now(timezone.utc)
        current = f"{now:%Y-%m-%d %H:%M:%S.%f} +0000 UTC m=+{time.monotonic():.6f}"
        return [self._envelope(s, "heartbeats", [{"current_time": current, "heartbeat_counter": str(counter)}])]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        t = self._ticker(s, s.subscribed[symbol], price="-1")
        return self._envelope(s, "ticker", [{"type": "update", "tickers": [t]}])


# ---- Kraken WS v2 ------------------------------------------------------------------------


class KrakenSim(SimProtocol):
    name = "kraken"
    heartbeat_s = 1.0

    def on_connect(self, s: SimSession) -> list[str]:
        return [dumps({"channel": "status", "type": "update", "data": [
            {"version": "2.0.9", "system": "online", "api_version": "v2", "connection_id": int(s.conn_id, 16)}]})]

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> str:
        # Kraken v2 sends JSON numbers: write the decimal text as a bare number.
        q_last, bid, ask = s.quote(inst)
        last = last or q_last
        return (
            f'{{"symbol":{json.dumps(inst.symbol)},"bid":{bid},"bid_qty":0.5,"ask":{ask},"ask_qty":1.2,'
            f'"last":{last},"volume":2158.3,"vwap":{last},"low":{bid},"high":{ask},"change":0.0,"change_pct":0.0}}'
        )

    def _ticker(self, kind: str, parts: list[str]) -> str:
        return f'{{"channel":"ticker","type":"{kind}","data":[{",".join(parts)}]}}'

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = _json(text)
        if not isinstance(msg, dict):
            return [dumps({"error": "Malformed request", "success": False, "time_in": rfc3339_us(), "time_out": rfc3339_us()})]
        method, req_id = msg.get("method"), msg.get("req_id")
        stamp = {"time_in": rfc3339_us(), "time_out": rfc3339_us()}
        if method == "ping":
            return [dumps({"method": "pong", "req_id": req_id, **stamp})]
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "ticker":
            return [dumps({"error": "Method or channel not supported", "method": method, "success": False, "req_id": req_id, **stamp})]
        symbols = params.get("symbol") if isinstance(params.get("symbol"), list) else []
        out: list[str] = []
        for sym in symbols:
            inst = s.lookup(sym)
            if inst is None:
                out.append(dumps({"method": method, "success": False, "error": f"Currency pair not supported {sym}",
                                  "symbol": sym, "req_id": req_id, **stamp}))
                continue
            if method == "unsubscribe":
                s.subscribed.pop(sym, None)
            result = {"channel": "ticker", "event_trigger": "trades", "snapshot": True, "symbol": sym}
            out.append(dumps({"method": method, "req_id": req_id, "success": True, "result": result, **stamp}))
            if method == "subscribe" and sym not in s.subscribed:
                s.subscribed[sym] = inst
                out.append(self._ticker("snapshot", [self._data(s, inst)]))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._ticker("update", [self._data(s, s.subscribed[sym])]) for sym in symbols]

    def heartbeat(self, s: SimSession) -> list[str]:
        return [dumps({"channel": "heartbeat"})] if s.subscribed else []

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        return self._ticker("update", [self._data(s, s.subscribed[symbol], last="0")])


# ---- Gemini market data v2 ------------------------------------------------------------------


class GeminiSim(SimProtocol):
    name = "gemini"
    heartbeat_s = 5.0
    _LEVELS = 5
    _STEP = 0.0002

    def _levels(self, s: SimSession, inst: Instrument) -> tuple[str, dict[str, str], dict[str, str]]:
        last, _bid, _ask = s.quote(inst)
        p = float(last)
        bids = {fmt(p * (1 - k * self._STEP)): f"{k * 0.25:.2f}" for k in range(1, self._LEVELS + 1)}
        asks = {fmt(p * (1 + k * self._STEP)): f"{k * 0.3:.2f}" for k in range(1, self._LEVELS + 1)}
        return last, bids, asks

    def _trade(self, s: SimSession, inst: Instrument, price: str, ts: int) -> dict[str, Any]:
        eid = s.extra["event_id"] = s.extra.get("event_id", 45465309641) + 1
        return {"type": "trade", "symbol": inst.symbol, "event_id": eid, "timestamp": ts, "price": price,
                "quantity": "0.01", "side": random.choice(("buy", "sell"))}

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = _json(text)
        subs = msg.get("subscriptions") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe") or not isinstance(subs, list):
            return [dumps({"result": "error", "reason": "InvalidJson", "message": "Failed to parse subscription"})]
        out: list[str] = []
        books: dict[str, tuple[dict[str, str], dict[str, str]]] = s.extra.setdefault("books", {})
        for sub in subs:
            if not isinstance(sub, dict) or sub.get("name") != "l2":
                out.append(dumps({"result": "error", "reason": "InvalidSubscription", "message": f"Unsupported subscription {sub!r}"}))
                continue
            for sym in sub.get("symbols") or []:
                inst = s.lookup(sym)
                if inst is None:
                    out.append(dumps({"result": "error", "reason": "InvalidSymbol", "message": f"Invalid symbol: {sym}"}))
                    continue
                if msg["type"] == "unsubscribe":
                    s.subscribed.pop(sym, None)
                    books.pop(sym, None)
                    continue
                if sym in s.subscribed:
                    continue
                s.subscribed[sym] = inst
                last, bids, asks = self._levels(s, inst)
                books[sym] = (bids, asks)
                ts = now_ms()
                # First message per symbol: the whole book plus recent trades, newest first.
                older = self._trade(s, inst, last, ts - 1000)
                trades = [self._trade(s, inst, last, ts), older]
                changes = [["buy", p, q] for p, q in bids.items()] + [["sell", p, q] for p, q in asks.items()]
                out.append(dumps({"type": "l2_updates", "symbol": sym, "changes": changes, "trades": trades, "auction_events": []}))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        out: list[str] = []
        books = s.extra.setdefault("books", {})
        for sym in symbols:
            inst = s.subscribed[sym]
            last, bids, asks = self._levels(s, inst)
            old_bids, old_asks = books.get(sym, ({}, {}))
            changes = [["buy", p, "0"] for p in old_bids if p not in bids] + [["sell", p, "0"] for p in old_asks if p not in asks]
            changes += [["buy", p, q] for p, q in bids.items() if old_bids.get(p) != q]
            changes += [["sell", p, q] for p, q in asks.items() if old_asks.get(p) != q]
            books[sym] = (bids, asks)
            if changes:
                out.append(dumps({"type": "l2_updates", "symbol": sym, "changes": changes}))
            out.append(dumps(self._trade(s, inst, last, now_ms())))
        return out

    def heartbeat(self, s: SimSession) -> list[str]:
        return [dumps({"type": "heartbeat", "timestamp": now_ms()})]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        t = self._trade(s, s.subscribed[symbol], "NaN", now_ms())
        return dumps(t)


# ---- Gate.io spot v4 ---------------------------------------------------------------------------


class GateSim(SimProtocol):
    name = "gateio"

    def _result(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        last = last or q_last
        return {"currency_pair": inst.symbol, "last": last, "lowest_ask": ask, "highest_bid": bid,
                "change_percentage": "0.5", "base_volume": "1138.9", "quote_volume": "72889600.1",
                "high_24h": ask, "low_24h": bid}

    def _update(self, s: SimSession, result: dict[str, Any]) -> str:
        ms = now_ms()
        return dumps({"time": ms // 1000, "time_ms": ms, "channel": "spot.tickers", "event": "update", "result": result})

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = _json(text)
        ms = now_ms()
        base = {"time": ms // 1000, "time_ms": ms}
        if not isinstance(msg, dict):
            return [dumps({**base, "channel": "", "event": "", "error": {"code": 1, "message": "invalid request body"}, "result": None})]
        channel, event, rid = msg.get("channel"), msg.get("event"), msg.get("id")
        if channel == "spot.ping":
            return [dumps({**base, "channel": "spot.pong", "event": "", "error": None, "result": None})]
        if channel != "spot.tickers" or event not in ("subscribe", "unsubscribe") or not isinstance(msg.get("payload"), list):
            return [dumps({**base, "id": rid, "channel": channel, "event": event,
                           "error": {"code": 2, "message": "invalid argument"}, "result": {"status": "fail"}})]
        out: list[str] = []
        good: list[Instrument] = []
        for sym in msg["payload"]:
            inst = s.lookup(sym)
            if inst is None:
                out.append(dumps({**base, "id": rid, "channel": channel, "event": event,
                                  "error": {"code": 2, "message": f"unknown currency pair {sym}"}, "result": {"status": "fail"}}))
            else:
                good.append(inst)
        if good:
            out.insert(0, dumps({**base, "id": rid, "channel": channel, "event": event, "error": None, "result": {"status": "success"}}))
        for inst in good:
            if event == "unsubscribe":
                s.subscribed.pop(inst.symbol, None)
            elif inst.symbol not in s.subscribed:
                s.subscribed[inst.symbol] = inst
                out.append(self._update(s, self._result(s, inst)))
        return out

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._update(s, self._result(s, s.subscribed[sym])) for sym in symbols]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        return self._update(s, self._result(s, s.subscribed[symbol], last="Infinity"))


# ---- Crypto.com Exchange v1 ------------------------------------------------------------------


class CryptoComSim(SimProtocol):
    name = "cryptocom"
    heartbeat_s = 30.0

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        return {"h": ask, "l": bid, "a": last or q_last, "c": "0.0050", "b": bid, "bs": "0.5000", "k": ask,
                "ks": "0.2000", "i": inst.symbol, "v": "879.5024", "vv": "56290000.12", "oi": "0", "t": now_ms()}

    def _push(self, inst: Instrument, data: dict[str, Any], rid: int = -1) -> str:
        return dumps({"id": rid, "method": "subscribe", "code": 0, "result": {
            "instrument_name": inst.symbol, "subscription": f"ticker.{inst.symbol}", "channel": "ticker", "data": [data]}})

    def on_text(self, s: SimSession, text: str) -> list[str]:
        msg = _json(text)
        if not isinstance(msg, dict):
            return [dumps({"id": -1, "code": 10004, "message": "BAD_REQUEST"})]
        method, rid = msg.get("method"), msg.get("id")
        if method == "public/respond-heartbeat":
            if s.pending_heartbeat is not None and rid == s.pending_heartbeat[0]:
                s.pending_heartbeat = None
            return []
        channels = (msg.get("params") or {}).get("channels") if isinstance(msg.get("params"), dict) else None
        if method not in ("subscribe", "unsubscribe") or not isinstance(channels, list):
            return [dumps({"id": rid, "method": method, "code": 10004, "message": "BAD_REQUEST"})]
        out: list[str] = []
        pushes: list[str] = []
        for ch in channels:
            sym = ch[len("ticker."):] if isinstance(ch, str) and ch.startswith("ticker.") else None
            inst = s.lookup(sym)
            if inst is None:
                out.append(dumps({"id": rid, "method": method, "code": 10004, "message": f"invalid channel {ch}", "channel": ch}))
                continue
            if method == "unsubscribe":
                s.subscribed.pop(inst.symbol, None)
            elif inst.symbol not in s.subscribed:
                s.subscribed[inst.symbol] = inst
                pushes.append(self._push(inst, self._data(s, inst), rid if isinstance(rid, int) else -1))
        out.append(dumps({"id": rid, "method": method, "code": 0}))
        return out + pushes

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._push(s.subscribed[sym], self._data(s, s.subscribed[sym])) for sym in symbols]

    def heartbeat(self, s: SimSession) -> list[str]:
        hid = now_ms()
        if s.pending_heartbeat is None:
            s.pending_heartbeat = (hid, time.monotonic() + s.sim.heartbeat_reply_s)
        return [dumps({"id": hid, "method": "public/heartbeat", "code": 0})]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        inst = s.subscribed[symbol]
        return self._push(inst, self._data(s, inst, last="abc"))


# ---- OKX v5 -------------------------------------------------------------------------------------


class OKXSim(SimProtocol):
    name = "okx"
    subscribe_deadline_s = 30.0

    def _data(self, s: SimSession, inst: Instrument, last: str | None = None) -> dict[str, Any]:
        q_last, bid, ask = s.quote(inst)
        return {"instType": "SPOT", "instId": inst.symbol, "last": last or q_last, "lastSz": "0.0002",
                "askPx": ask, "askSz": "1.5", "bidPx": bid, "bidSz": "0.23", "open24h": q_last, "high24h": ask,
                "low24h": bid, "volCcy24h": "525802090.6", "vol24h": "17602.1", "sodUtc0": q_last, "sodUtc8": q_last,
                "ts": str(now_ms())}

    def _push(self, inst: Instrument, data: dict[str, Any]) -> str:
        return dumps({"arg": {"channel": "tickers", "instId": inst.symbol}, "data": [data]})

    def on_text(self, s: SimSession, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        msg = _json(text)
        args = msg.get("args") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return [dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}", "connId": s.conn_id})]
        out: list[str] = []
        pushes: list[str] = []
        rid = {"id": msg["id"]} if "id" in msg else {}
        for arg in args:
            arg = arg if isinstance(arg, dict) else {}
            sym = arg.get("instId")
            inst = s.lookup(sym) if arg.get("channel") == "tickers" else None
            if inst is None:
                out.append(dumps({**rid, "event": "error", "code": "60018",
                                  "msg": f"channel:{arg.get('channel')},instId:{sym} doesn't exist", "connId": s.conn_id}))
                continue
            out.append(dumps({**rid, "event": msg["op"], "arg": {"channel": "tickers", "instId": sym}, "connId": s.conn_id}))
            if msg["op"] == "unsubscribe":
                s.subscribed.pop(sym, None)
            elif sym not in s.subscribed:
                s.subscribed[sym] = inst
                pushes.append(self._push(inst, self._data(s, inst)))
        return out + pushes

    def updates(self, s: SimSession, symbols: list[str]) -> list[str]:
        return [self._push(s.subscribed[sym], self._data(s, s.subscribed[sym])) for sym in symbols]

    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        inst = s.subscribed[symbol]
        return self._push(inst, self._data(s, inst, last=""))


PROTOCOLS: dict[str, SimProtocol] = {p.name: p for p in (CoinbaseSim(), KrakenSim(), GeminiSim(), GateSim(), CryptoComSim(), OKXSim())}
