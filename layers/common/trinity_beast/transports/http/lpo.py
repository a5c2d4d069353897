"""The LPO HTTP server: a thin ASGI front for the hot routes, FastAPI for the rest.

`GET /price` is the hottest path in the system, so it is answered straight from ASGI
(no routing, dependency solving or validation layers) by the same `PriceDesk.answer` that
UDP uses. Every other path goes to the FastAPI app, whose errors are UMEs too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.responses import Response

from trinity_beast.domain.envelope import dumps
from trinity_beast.domain.usage import rate_limit_headers
from trinity_beast.services.auth import credentials
from trinity_beast.services.prices.answer import PriceRequest
from trinity_beast.transports.http.common import add_usage_me, envelope_response, install_error_handlers
from trinity_beast.transports.http.docs_ui import add_docs
from trinity_beast.transports.http.keyfirst import KeyBeforeBody
from trinity_beast.transports.http.openapi import install_openapi, lpo_paths
from trinity_beast.transports.http.ops import Instrument, add_ops_routes, route_paths, ws_samples
from trinity_beast.transports.ws.frames import ENDPOINT as WS_ENDPOINT
from trinity_beast.transports.ws.hub import Hub

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]  # as Starlette declares it: FastAPI gets our send
Receive = Callable[[], Awaitable[dict[str, Any]]]

JSON = b"application/json"


def query_params(raw: bytes) -> dict[str, list[str]]:
    """The query string's parameters; the common case (nothing escaped) skips urllib's machinery."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qs(text, keep_blank_values=True)
    params: dict[str, list[str]] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.setdefault(name, []).append(value)
    return params


async def send_body(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class LpoHttp:
    """ASGI app: hot routes here, everything else to `api`."""

    HOT_PATHS = ("/price", "/health")

    def __init__(self, rt: Runtime, api: FastAPI) -> None:
        self.rt = rt
        self.api = api
        self.envelopes = rt.envelopes("LPO")
        self.hub = Hub(rt)
        self._front = Instrument(self.route, rt.metrics, "LPO", lambda: [*self.HOT_PATHS, *route_paths(api)])
        rt.metrics.add_collector("websocket", lambda: ws_samples(self.hub.stats()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/price":
                return await self.price(scope, send)
            if path == "/health":
                return await self.health(scope, send)
        elif kind == "websocket" and scope["path"] == WS_ENDPOINT:
            return await self.hub.serve(scope, receive, send)
        await self.api(scope, receive, send)

    async def method_not_allowed(self, scope: Scope, send: Send, allowed: str) -> None:
        body = self.envelopes.error(scope["path"], 405, f"method {scope['method']} not allowed on {scope['path']}")
        await send_body(send, 405, dumps(body), [(b"allow", allowed.encode())])

    async def price(self, scope: Scope, send: Send) -> None:
        if scope["method"] != "GET":
            return await self.method_not_allowed(scope, send, "GET")
        query = query_params(scope["query_string"])
        request = PriceRequest(
            credentials(scope["headers"], next(iter(query.get("api_key") or []), None)),
            query.get("asset", []),
            "http",
            aggregate=next(iter(query.get("aggregate") or []), None),
            max_age_ms=next(iter(query.get("max_age_ms") or []), None),
        )
        try:
            answer = await self.rt.prices.answer(request, self.envelopes)
        except Exception:  # a bug must still answer an envelope, and never stop the server
            log.exception("GET /price failed")
            body = self.envelopes.error("/price", 500, "internal error; the failure was logged")
            return await send_body(send, 500, dumps(body))
        headers = rate_limit_headers(answer.quota)
        if answer.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="trinity-beast"'))
        elif answer.status == 503:  # as every other route's 503 (transports/http/common.py)
            headers.append((b"retry-after", b"5"))
        await send_body(send, answer.status, answer.encoded(), headers)

    async def health(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            return await self.method_not_allowed(scope, send, "GET, HEAD")
        data = {
            "status": "ok",
            "uptime_s": round(time.time() - self.rt.started_at, 1),
            **self.rt.health(),
            "websocket": self.hub.stats(),
        }
        await send_body(send, 200, dumps(self.envelopes.ok("/health", data)))


def build_lpo(rt: Runtime) -> LpoHttp:
    api = FastAPI(title="Trinity Beast LPO", version="0.1.0", docs_url=None, redoc_url=None)
    envelopes = rt.envelopes("LPO")
    install_error_handlers(api, envelopes)
    add_docs(api, envelopes)
    add_usage_me(api, rt, envelopes)
    add_ops_routes(api, rt, envelopes, "LPO")

    @api.get("/ws/assets", summary="The prewarmed assets and the exchanges that quote each (no key needed)")
    async def assets() -> Response:
        return envelope_response(envelopes.ok("/ws/assets", rt.registry.listing()))

    install_openapi(api, lpo_paths())
    api.add_middleware(KeyBeforeBody, rt=rt, envelopes=envelopes)
    return LpoHttp(rt, api)
