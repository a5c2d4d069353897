"""The exchange simulator: all six exchanges' WebSocket and REST protocols on one port.

`ws://HOST:PORT/<exchange>` speaks that exchange's real WebSocket protocol and
`http://HOST:PORT/<exchange><real REST path>` its REST API, so the real connectors run
against it unchanged (see `sim_urls`). Misbehaviour is switchable per exchange, in
process (`Simulator.set_mode`, `reject`, `drop`, `set_price`) or over HTTP
(`POST /_control`) when it runs as `beast sim`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlsplit

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from trinity_beast.domain.assets import AssetRegistry, Instrument, load_registry
from trinity_beast.domain.settings import DEFAULT_REST_URLS, EXCHANGES
from trinity_beast.transports.server import QuietServer
from beast_sim.prices import PriceModel
from beast_sim.protocols import CLOCK_SKEW, PROTOCOLS, SimProtocol, SimSession
from beast_sim.rest import kraken_result_key, rest_routes

log = logging.getLogger("beast_sim")

# normal: behave; drop: close every connection shortly after it opens; silent: keep
# connections open but send nothing (REST hangs); garbage: mix malformed frames into the
# stream (REST answers garbage); down: refuse connections (REST 503); flood: send updates
# for every subscribed symbol, FLOOD_COPIES times over, as fast as the connection takes them.
MODES = ("normal", "drop", "silent", "garbage", "down", "flood")
FLOOD_COPIES = 20

_GARBAGE: list[str | bytes] = ["{not json", "[]", '{"unexpected": true}', "null", '"just a string"', b"\xff\xfe\x00binary"]


def sim_urls(host: str, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """(ws_urls, rest_urls) that point every exchange at a simulator on host:port."""
    ws = {ex: f"ws://{host}:{port}/{ex}" for ex in EXCHANGES}
    rest = {ex: f"http://{host}:{port}/{ex}{urlsplit(DEFAULT_REST_URLS[ex]).path.rstrip('/')}" for ex in EXCHANGES}
    return ws, rest


def sim_env(host: str, port: int) -> dict[str, str]:
    """The BEAST_<EX>_WS_URL / BEAST_<EX>_REST_URL settings for a simulator on host:port."""
    ws, rest = sim_urls(host, port)
    env = {f"BEAST_{ex.upper()}_WS_URL": url for ex, url in ws.items()}
    env.update({f"BEAST_{ex.upper()}_REST_URL": url for ex, url in rest.items()})
    return env


class Simulator:
    """Six fake exchanges with moving prices and switchable misbehaviour.

    Use `async with Simulator() as sim:` (or `await sim.start()` / `await sim.stop()`);
    port 0 picks a free port, read back from `sim.port`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: AssetRegistry | None = None,
        *,
        push_interval_s: float = 0.2,
        updates_per_push: int = 10,
        seed: int | None = None,
        heartbeat_s: Mapping[str, float] | None = None,
        heartbeat_reply_s: float = 5.0,
        subscribe_deadline_s: Mapping[str, float] | None = None,
        drop_after_s: float = 0.5,
        rest_stall_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry or load_registry()
        self.push_interval_s = push_interval_s
        self.updates_per_push = updates_per_push
        self.heartbeat_s = dict(heartbeat_s or {})
        self.heartbeat_reply_s = heartbeat_reply_s
        self.subscribe_deadline_s = dict(subscribe_deadline_s or {})
        self.drop_after_s = drop_after_s
        self.rest_stall_s = rest_stall_s
        self.prices = PriceModel(self.registry.assets, seed=seed)
        self._rng = random.Random(seed)
        self._modes: dict[str, str] = {ex: "normal" for ex in EXCHANGES}
        self._skew: dict[str, float] = {ex: 0.0 for ex in EXCHANGES}
        self._rejected: dict[str, set[str]] = {ex: set() for ex in EXCHANGES}
        self._by_symbol: dict[str, dict[str, Instrument]] = {}
        self._by_rest: dict[str, dict[str, Instrument]] = {}
        for ex in EXCHANGES:
            insts = self.registry.instruments_for(ex)
            self._by_symbol[ex] = {i.symbol: i for i in insts}
            rest = {i.rest_symbol.lower(): i for i in insts}
            rest.update({i.symbol.lower(): i for i in insts})
            if ex == "kraken":  # Kraken also accepts its result-key names (XXBTZUSD)
                rest.update({kraken_result_key(i).lower(): i for i in insts})
            self._by_rest[ex] = rest
        self.sessions: dict[str, set[SimSession]] = {ex: set() for ex in EXCHANGES}
        self.rest_calls: Counter[str] = Counter()
        self.ticker_calls: Counter[tuple[str, str]] = Counter()
        self.connections: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()  # connections the simulator closed, per exchange
        self.heartbeat_disconnects: Counter[str] = Counter()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._walk_task: asyncio.Task[None] | None = None

    # ---- control -------------------------------------------------------------------------
    def set_mode(self, exchange: str, mode: str) -> None:
        self._check_exchange(exchange)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self._modes[exchange] = mode

    def mode(self, exchange: str) -> str:
        return self._modes.get(exchange, "normal")

    def set_clock_skew(self, exchange: str, seconds: float) -> None:
        """Make the exchange's timestamps run `seconds` ahead of real time (negative: behind)."""
        self._check_exchange(exchange)
        if not math.isfinite(seconds):
            raise ValueError(f"bad clock skew {seconds!r}")
        self._skew[exchange] = float(seconds)

    def reject(self, exchange: str, symbol: str) -> None:
        """Make the exchange answer `symbol` (WS or REST) as an unknown instrument."""
        self._check_exchange(exchange)
        self._rejected[exchange].add(symbol)

    def accept(self, exchange: str, symbol: str) -> None:
        self._check_exchange(exchange)
        self._rejected[exchange].discard(symbol)

    def set_price(self, asset: str, price: Decimal | str | float | None) -> None:
        """Pin `asset` at exactly `price` on every exchange (None resumes the random walk)."""
        if asset not in self.registry:
            raise ValueError(f"unknown asset {asset!r}")
        if price is None:
            self.prices.pin(asset, None)
            return
        try:
            value = Decimal(str(price))
        except InvalidOperation:
            raise ValueError(f"bad price {price!r}") from None
        if not value.is_finite() or value <= 0:
            raise ValueError(f"bad price {price!r}")
        self.prices.pin(asset, value)

    def drop(self, exchange: str) -> int:
        """Close every current connection of `exchange` (within one push interval)."""
        self._check_exchange(exchange)
        for s in self.sessions[exchange]:
            s.kill = True
        return len(self.sessions[exchange])

    def active(self, exchange: str) -> int:
        return len(self.sessions[exchange])

    def reset_counters(self) -> None:
        for c in (self.rest_calls, self.ticker_calls, self.connections, self.disconnects, self.heartbeat_disconnects):
            c.clear()

    def reset(self) -> None:
        """Back to normal: every exchange well-behaved, nothing rejected, prices unpinned."""
        for ex in EXCHANGES:
            self._modes[ex] = "normal"
            self._skew[ex] = 0.0
            self._rejected[ex].clear()
        for asset in list(self.prices.pinned):
            self.prices.pin(asset, None)

    def snapshot(self) -> dict[str, Any]:
        """State and counters, JSON-ready (GET /_control)."""
        return {
            "modes": dict(self._modes),
            "clock_skew": {ex: s for ex, s in self._skew.items() if s},
            "rejected": {ex: sorted(s) for ex, s in self._rejected.items() if s},
            "pinned": {a: str(p) for a, p in self.prices.pinned.items()},
            "active": {ex: len(s) for ex, s in self.sessions.items()},
            "connections": dict(self.connections),
            "disconnects": dict(self.disconnects),
            "heartbeat_disconnects": dict(self.heartbeat_disconnects),
            "rest_calls": dict(self.rest_calls),
            "ticker_calls": {f"{ex}:{asset}": n for (ex, asset), n in self.ticker_calls.items()},
        }

    # ---- lookups used by the protocols ---------------------------------------------------
    def instrument(self, exchange: str, symbol: str) -> Instrument | None:
        if symbol in self._rejected.get(exchange, ()):
            return None
        return self._by_symbol.get(exchange, {}).get(symbol)

    def rest_instrument(self, exchange: str, name: str) -> Instrument | None:
        inst = self._by_rest.get(exchange, {}).get(name.lower())
        if inst is None or inst.symbol in self._rejected[exchange]:
            return None
        return inst

    def listed(self, exchange: str) -> list[Instrument]:
        return [i for i in self._by_symbol[exchange].values() if i.symbol not in self._rejected[exchange]]

    def _check_exchange(self, exchange: str) -> None:
        if exchange not in self._modes:
            raise ValueError(f"unknown exchange {exchange!r}")

    # ---- URLs ------------------------------------------------------------------------------
    @property
    def ws_urls(self) -> dict[str, str]:
        return sim_urls(self.host, self.port)[0]

    @property
    def rest_urls(self) -> dict[str, str]:
        return sim_urls(self.host, self.port)[1]

    def env(self) -> dict[str, str]:
        return sim_env(self.host, self.port)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _config(self, embedded: bool = True) -> uvicorn.Config:
        # Embedded in another process, leave its logging configuration alone.
        extra: dict[str, Any] = {"log_config": None} if embedded else {}
        return uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            **extra,
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            ws_max_size=1 << 20,
            timeout_graceful_shutdown=1,
        )

    async def start(self) -> "Simulator":
        """Serve in the background of the current event loop; returns once listening."""
        if self._serve_task is not None:
            return self
        self._server = QuietServer(self._config())
        self._serve_task = asyncio.create_task(self._server.serve(), name="exchange-sim")
        while not self._server.started:
            if self._serve_task.done():
                await self._serve_task  # re-raise the startup failure (port in use, ...)
                raise RuntimeError("simulator failed to start")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._walk_task = asyncio.create_task(self._walk(), name="exchange-sim-prices")
        log.info("exchange simulator listening on %s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._walk_task is not None:
            self._walk_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._walk_task
            self._walk_task = None
        if self._server is not None and self._serve_task is not None:
            for sessions in self.sessions.values():
                for s in sessions:
                    s.kill = True
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve_task
        self._server = None
        self._serve_task = None

    async def __aenter__(self) -> "Simulator":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _walk(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval_s)
            self.prices.step()

    # ---- the app -------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        routes: list[Any] = [WebSocketRoute(f"/{ex}", self._ws_endpoint(ex)) for ex in EXCHANGES]
        routes += rest_routes()
        routes.append(Route("/_control", self._control, methods=["GET", "POST"]))
        app = Starlette(routes=routes)
        app.state.sim = self
        return app

    async def _control(self, request: Request) -> Response:
        """POST {"action": "set_mode"|"set_clock_skew"|"reject"|"accept"|"set_price"|"drop"|"reset"|"reset_counters", ...}."""
        if request.method == "POST":
            try:
                body = orjson.loads(await request.body())
                action = body["action"]
                if action == "set_mode":
                    self.set_mode(body["exchange"], body["mode"])
                elif action == "reject":
                    self.reject(body["exchange"], body["symbol"])
                elif action == "accept":
                    self.accept(body["exchange"], body["symbol"])
                elif action == "set_clock_skew":
                    self.set_clock_skew(body["exchange"], float(body["seconds"]))
                elif action == "set_price":
                    self.set_price(body["asset"], body.get("price"))
                elif action == "drop":
                    self.drop(body["exchange"])
                elif action == "reset":
                    self.reset()
                elif action == "reset_counters":
                    self.reset_counters()
                else:
                    raise ValueError(f"unknown action {action!r}")
            except (ValueError, KeyError, TypeError) as exc:
                return Response(orjson.dumps({"ok": False, "error": str(exc)}), status_code=400, media_type="application/json")
        return Response(orjson.dumps({"ok": True, "state": self.snapshot()}), media_type="application/json")

    def _ws_endpoint(self, exchange: str):
        async def endpoint(websocket: WebSocket) -> None:
            await self._serve_ws(exchange, websocket)

        return endpoint

    async def _serve_ws(self, exchange: str, ws: WebSocket) -> None:
        if self.mode(exchange) == "down":
            await ws.close(code=1013)  # before accept: the handshake is refused (HTTP 403)
            return
        await ws.accept()
        proto = PROTOCOLS[exchange]
        s = SimSession(exchange, self)
        self.connections[exchange] += 1
        self.sessions[exchange].add(s)
        lock = asyncio.Lock()

        async def send(frames: list[str | bytes]) -> None:
            async with lock:
                for frame in frames:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_text(frame)

        reader = asyncio.create_task(self._read(ws, proto, s, send))
        closed_by_us = False
        try:
            await send(list(proto.on_connect(s)))
            closed_by_us = await self._push(exchange, proto, s, send, reader)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            self.sessions[exchange].discard(s)
            if closed_by_us:
                self.disconnects[exchange] += 1
                with contextlib.suppress(Exception):
                    await ws.close(code=1001)

    async def _push(self, exchange: str, proto: SimProtocol, s: SimSession, send: Any, reader: asyncio.Task[None]) -> bool:
        """Periodic updates and heartbeats; True when the simulator decided to close."""
        hb_every = self.heartbeat_s.get(exchange, proto.heartbeat_s)
        next_hb = time.monotonic() + hb_every if hb_every else math.inf
        deadline = self.subscribe_deadline_s.get(exchange, proto.subscribe_deadline_s)
        while True:
            flooding = self.mode(exchange) == "flood" and s.subscribed
            await asyncio.wait({reader}, timeout=0 if flooding else self.push_interval_s)
            if reader.done():
                return False
            now = time.monotonic()
            mode = self.mode(exchange)
            CLOCK_SKEW.set(self._skew[exchange])
            if s.kill or (mode == "drop" and now - s.opened >= self.drop_after_s):
                return True
            if mode == "silent":
                continue
            if deadline and not s.subscribed and now - s.opened > deadline:
                return True
            if s.pending_heartbeat is not None and now > s.pending_heartbeat[1]:
                self.heartbeat_disconnects[exchange] += 1
                return True
            frames: list[str | bytes] = []
            if hb_every and now >= next_hb:
                frames += proto.heartbeat(s)
                next_hb = now + hb_every
            if s.subscribed:
                symbols = list(s.subscribed)
                chosen = self._rng.sample(symbols, min(self.updates_per_push, len(symbols)))
                frames += proto.updates(s, chosen)
                if mode == "flood":
                    frames += proto.updates(s, symbols) * FLOOD_COPIES
                if mode == "garbage":
                    frames += _GARBAGE
                    frames.append(proto.bad_ticker(s, chosen[0]))
            if frames:
                await send(frames)

    async def _read(self, ws: WebSocket, proto: SimProtocol, s: SimSession, send: Any) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                text = raw.decode("utf-8", "replace")
            if self.mode(s.exchange) == "silent":
                continue
            CLOCK_SKEW.set(self._skew[s.exchange])
            try:
                frames = proto.on_text(s, text)
            except Exception:  # a bad client frame must not break the simulator
                log.exception("simulator %s: failed to handle %r", s.exchange, text[:200])
                continue
            if frames:
                await send(frames)


async def serve(host: str = "127.0.0.1", port: int = 8765, **options: Any) -> None:
    """Run the simulator until cancelled or interrupted (`beast sim`)."""
    sim = Simulator(host, port, **options)
    server = uvicorn.Server(sim._config(embedded=False))
    sim._server = server
    walk = asyncio.create_task(sim._walk())
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True  # shut down cleanly: close the listening socket and clients
        await task
        raise
    finally:
        walk.cancel()
