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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from beast_sim.exchanges import REST_ALIASES
from beast_sim.rest import rest_routes
from beast_sim.state import SimState
from beast_sim.urls import sim_env, sim_urls
from beast_sim.websocket import serve_connection
from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.exchanges import cryptocom
from trinity_beast.transports.server import QuietServer

log = logging.getLogger("beast_sim")


class Simulator(SimState):
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
        heartbeat_reply_s: float = cryptocom.HEARTBEAT_REPLY_S,
        subscribe_deadline_s: Mapping[str, float] | None = None,
        drop_after_s: float = 0.5,
        rest_stall_s: float = 30.0,
    ) -> None:
        super().__init__(
            registry,
            push_interval_s=push_interval_s,
            updates_per_push=updates_per_push,
            seed=seed,
            heartbeat_s=heartbeat_s,
            heartbeat_reply_s=heartbeat_reply_s,
            subscribe_deadline_s=subscribe_deadline_s,
            drop_after_s=drop_after_s,
            rest_stall_s=rest_stall_s,
        )
        self.host = host
        self.port = port
        for exchange, name_of in REST_ALIASES.items():
            self.accept_rest_names(exchange, name_of)
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._walk_task: asyncio.Task[None] | None = None

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

    async def start(self) -> Simulator:
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

    async def __aenter__(self) -> Simulator:
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
        """POST one control action (SimState.apply_control); GET or POST answer the state."""
        if request.method == "POST":
            try:
                self.apply_control(orjson.loads(await request.body()))
            except (ValueError, KeyError, TypeError) as exc:
                return Response(
                    orjson.dumps({"ok": False, "error": str(exc)}), status_code=400, media_type="application/json"
                )
        return Response(orjson.dumps({"ok": True, "state": self.snapshot()}), media_type="application/json")

    def _ws_endpoint(self, exchange: str) -> Callable[[WebSocket], Awaitable[None]]:
        async def endpoint(websocket: WebSocket) -> None:
            await serve_connection(self, exchange, websocket)

        return endpoint


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
