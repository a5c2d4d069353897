"""`beast serve --only feeds`: the exchange feeds, the prewarm and the tick writer into the
cache, once per stack, with nothing served but /health, /ready and /metrics on the LPO port.

Every LPO process running its own six feeds and prewarm multiplies exchange connections and
REST calls (exchanges limit them per address, and a stack leaves through one NAT address);
with one feed process the LPO processes run with BEAST_FEEDS=0 and BEAST_PREWARM=0 and only
read and subscribe to the prices it writes into Redis.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import Response

from trinity_beast.domain.settings import Settings
from trinity_beast.transports.http.common import envelope_response, install_error_handlers
from trinity_beast.transports.http.ops import add_ops_routes
from trinity_beast.transports.server import StartupError

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

SERVICE = "FEEDS"


def check_settings(settings: Settings, workers: int) -> None:
    """What --only feeds cannot do without: StartupError naming the setting."""
    if not settings.redis_url:
        raise StartupError("--only feeds: needs REDIS_URL (the prices it writes are for other processes to serve)")
    if not settings.feeds:
        raise StartupError("--only feeds: BEAST_FEEDS is off, so this process would do nothing")
    if workers != 1:
        raise StartupError("--only feeds: runs as one process (--workers 1); run one feed task per stack")


def build_feeds_app(rt: Runtime) -> FastAPI:
    """/health (alive, feed states), /ready (cache reachable and a fresh feed), /metrics."""
    envelopes = rt.envelopes(SERVICE)
    api = FastAPI(title="Trinity Beast feeds", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(api, envelopes)

    @api.get("/health")
    async def health() -> Response:
        data = {"status": "ok", "uptime_s": round(time.time() - rt.started_at, 1), **rt.health()}
        return envelope_response(envelopes.ok("/health", data))

    add_ops_routes(api, rt, envelopes, SERVICE)
    return api
