"""Letting a connection into /ws/prices: its key, checked the way every protocol checks one.

The key comes from `?api_key=` or an `Authorization: Bearer` header. The connection is
accepted before any refusal so the client can read why it was refused in the close frame:
1013 when the key database is unreachable (retry), 1008 for a missing, invalid or revoked key
or an exhausted monthly quota (after a 429 envelope, as when the limit is reached mid-stream).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from trinity_beast.domain.envelope import utc_iso
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import ApiKey
from trinity_beast.services.auth import KeyRing, authenticate, quota_for
from trinity_beast.services.meter import Meter
from trinity_beast.transports.ws.client import Send
from trinity_beast.transports.ws.frames import Messages


def secret_of(scope: dict[str, Any]) -> str | None:
    """The API key a connection presents: the query's `api_key`, else a bearer token."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    secret = (query.get("api_key") or [None])[0]
    if secret is None:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                secret = value[7:].decode("latin-1").strip()
    return secret


def client_address(scope: dict[str, Any]) -> str:
    return str((scope.get("client") or ("unknown",))[0])


async def accepted_key(keys: KeyRing, meter: Meter, messages: Messages, scope: dict[str, Any], send: Send) -> ApiKey | None:
    """Accept the connection and return its key, or close it saying why and return None."""
    try:
        key, problem = await authenticate(keys, secret_of(scope))
    except DatabaseUnavailable:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1013, "reason": "key database unreachable: retry shortly"})
        return None
    await send({"type": "websocket.accept"})
    if problem is not None or key is None:
        await send({"type": "websocket.close", "code": 1008, "reason": problem or "invalid API key"})
        return None
    quota = await quota_for(meter, key)
    if quota.exhausted:
        error = f"monthly limit of {quota.limit} requests reached; the limit resets at {utc_iso(quota.reset_at)}"
        await send({"type": "websocket.send", "text": messages.reply(key.id, 429, None, error).decode()})
        await send({"type": "websocket.close", "code": 1008, "reason": error})
        return None
    return key
