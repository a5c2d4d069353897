"""The request-body limit as ASGI middleware, for servers whose protocol we do not subclass.

Under uvicorn the limit lives in the HTTP protocol (transports/http/guards.py). granian's
HTTP/1.1 (hyper) reads bodies of any size, so when it serves an app this wrapper enforces the
same MAX_BODY_BYTES with the same answer: a declared Content-Length over the limit gets a 413
envelope before the app runs; a streamed (chunked) body is counted as the app reads it, and
the read that crosses the limit answers the 413 itself, tells the app the client left, and
drops whatever the app sends after that. Nothing else is touched: /price pays one look
through its few headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from trinity_beast.domain.envelope import dumps
from trinity_beast.transports.http.guards import MAX_BODY_BYTES, envelopes_of

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


class BodyLimit:
    """`app` with request bodies limited to `max_body_bytes` (HTTP only; WebSockets pass through)."""

    def __init__(self, app: App, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    @property
    def envelopes(self) -> Any:  # the refusal envelope is the wrapped app's (guards.envelopes_of)
        return envelopes_of(self.app)

    async def refuse(self, send: Send, message: str) -> None:
        log.info("refused a request: %s", message)
        envelopes = self.envelopes
        body = dumps(envelopes.error("/", 413, message) if envelopes else {"status_code": 413, "error": message})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes
        length = declared_length(scope)
        if length is not None and length > limit:
            return await self.refuse(send, f"request body of {length} bytes is over the {limit}-byte limit")
        seen = 0
        refused = started = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    if not started:
                        await self.refuse(send, f"request body over the {limit}-byte limit")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # answered already: the app's own answer to the disconnect goes nowhere
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
