"""The request-body limits as ASGI middleware, for a server whose protocol we do not subclass.

Under uvicorn the limits live in the HTTP protocol (transports/http/guards.py). granian's
HTTP/1.1 (hyper) reads bodies of any size and waits for them as long as the client likes, so
when it serves an app this wrapper enforces the same two limits with the same answers:

- a declared Content-Length over MAX_BODY_BYTES gets a 413 envelope before the app runs; a
  streamed (chunked) body is counted as the app reads it, and the read that crosses the limit
  answers the 413 itself;
- a body the app is waiting for that is not complete `body_timeout_s` after the request came
  gets a 408 envelope (BEAST_BODY_TIMEOUT_S).

Either way the app is told the client left (`http.disconnect`) and whatever it sends after
that goes nowhere. Nothing else is touched: /price pays one look through its few headers,
and WebSockets pass through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trinity_beast.domain.envelope import dumps
from trinity_beast.transports.http.guards import BODY_TIMEOUT_S, MAX_BODY_BYTES, envelopes_of

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
    """`app` with request bodies limited in size and time (HTTP only; WebSockets pass through)."""

    def __init__(self, app: App, max_body_bytes: int = MAX_BODY_BYTES, body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.envelopes = envelopes_of(app)  # the refusal envelope is the wrapped app's

    async def refuse(self, send: Send, status: int, message: str) -> None:
        log.info("refused a request: %s", message)
        envelopes = self.envelopes
        body = dumps(envelopes.error("/", status, message) if envelopes else {"status_code": status, "error": message})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes
        length = declared_length(scope)
        if length is not None and length > limit:
            return await self.refuse(send, 413, f"request body of {length} bytes is over the {limit}-byte limit")
        deadline = time.monotonic() + self.body_timeout_s
        seen = 0
        refused = started = done = False

        async def refuse_once(status: int, message: str) -> Message:
            nonlocal refused
            refused = True
            if not started:
                await self.refuse(send, status, message)
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal seen, done
            if refused:
                return {"type": "http.disconnect"}
            if done:  # the body is in: what is left to wait for is the client leaving
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await refuse_once(408, f"request body not received within {self.body_timeout_s:g} s")
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    return await refuse_once(413, f"request body over the {limit}-byte limit")
                done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # answered already: the app's own answer to the disconnect goes nowhere
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
