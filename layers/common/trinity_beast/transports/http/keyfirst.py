"""Authenticate before reading a body.

Every route that takes a request body (the partner routes) needs a key, so a request that
declares a body must show a valid key in its headers or query before a byte of the body is
read: a stranger cannot make the server hold a connection and buffer a megabyte on the
promise of a body. Refused here, the answer is the same 401 (or 503 while keys cannot be
checked) the route itself would give; the HTTP protocol (guards.py) then closes the
connection instead of reading the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.services.auth import KEYS_UNAVAILABLE, authenticate, credentials

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name == b"transfer-encoding":
            return True
    return False


def query_key(raw: bytes) -> str | None:
    from urllib.parse import parse_qsl

    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name == "api_key" and value:
            return value
    return None


class KeyBeforeBody:
    """ASGI middleware: a request with a body and no valid key is answered before its body is read."""

    def __init__(self, app: Any, rt: Runtime, envelopes: Envelopes) -> None:
        self.app = app
        self.rt = rt
        self.envelopes = envelopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not declares_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        creds = credentials(scope["headers"], query_key(scope.get("query_string", b"")))
        try:
            key, problem = await authenticate(self.rt.keys, creds)
        except DatabaseUnavailable:
            return await self._answer(send, scope["path"], 503, KEYS_UNAVAILABLE, [(b"retry-after", b"5")])
        if problem is not None or key is None:
            challenge = [(b"www-authenticate", b'Bearer realm="trinity-beast"')]
            return await self._answer(send, scope["path"], 401, problem or "invalid API key", challenge)
        await self.app(scope, receive, send)

    async def _answer(
        self, send: Send, path: str, status: int, message: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        body = dumps(self.envelopes.error(path[:200], status, message))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
