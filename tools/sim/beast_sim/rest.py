"""The six exchanges' REST endpoints as routes, with each exchange's misbehaviour mode applied.

The handlers live with their exchange (beast_sim/exchanges/); this module mounts them under
the real base paths (beast_sim.urls) and counts every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from beast_sim.exchanges import REST_ROUTES
from beast_sim.protocol import RestHandler
from beast_sim.state import SimState
from beast_sim.urls import rest_prefix


def _endpoint(exchange: str, handler: RestHandler) -> Callable[[Request], Awaitable[Response]]:
    """Count the call and apply the exchange's misbehaviour mode before answering."""

    async def endpoint(request: Request) -> Response:
        sim: SimState = request.app.state.sim
        sim.rest_calls[exchange] += 1
        mode = sim.mode(exchange)
        if mode == "down":
            return Response("503 Service Unavailable", status_code=503, media_type="text/plain")
        if mode == "silent":
            await asyncio.sleep(sim.rest_stall_s)
        if mode == "garbage":
            return Response(b"<html>\x00garbage", status_code=200, media_type="text/html")
        return await handler(sim, request)

    return endpoint


def rest_routes() -> list[Route]:
    return [
        Route(rest_prefix(exchange) + path, _endpoint(exchange, handler), methods=["GET"])
        for exchange, routes in REST_ROUTES.items()
        for path, handler in routes
    ]
