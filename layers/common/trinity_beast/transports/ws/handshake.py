"""Letting a connection into /ws/prices: its key, checked the way every protocol checks one.

The key comes from `?api_key=`, an `Authorization: Bearer` header, or, for browsers (which
cannot set headers on a WebSocket and should not put a key in a URL that logs and history
keep), a first message `{"auth": KEY}` within 10 s. The connection is
accepted before any refusal so the client can read why it was refused in the close frame:
1013 when the key database is unreachable (retry), 1008 for a missing, invalid or revoked key
or an exhausted monthly quota (after a 429 envelope, as when the limit is reached mid-stream).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import orjson

from trinity_beast.domain.envelope import utc_iso
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import ApiKey
from trinity_beast.services.auth import MISSING_KEY, Credentials, KeyRing, authenticate, credentials, quota_for
from trinity_beast.services.meter import Meter
from trinity_beast.transports.ws.client import Receive, Send
from trinity_beast.transports.ws.frames import Messages

FIRST_MESSAGE_WAIT_S = 10.0


def secret_of(scope: dict[str, Any]) -> Credentials:
    """The API key a connection presents, by the one key rule (services/auth.py): a bearer
    header wins, a malformed Authorization is refused, the query's `api_key` counts otherwise."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return credentials(scope.get("headers", []), (query.get("api_key") or [None])[0])


def client_address(scope: dict[str, Any]) -> str:
    return str((scope.get("client") or ("unknown",))[0])


async def first_message_key(receive: Receive, wait_s: float = FIRST_MESSAGE_WAIT_S) -> str | None:
    """The key from a first message {"auth": KEY}; None when it does not come in time."""
    try:
        message = await asyncio.wait_for(receive(), wait_s)
    except TimeoutError:
        return None
    raw = message.get("text") if message.get("text") is not None else message.get("bytes")
    if message["type"] != "websocket.receive" or not raw or len(raw) > 1024:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    secret = value.get("auth") if isinstance(value, dict) and len(value) == 1 else None
    return secret.strip() if isinstance(secret, str) and secret.strip() else None


async def accepted_key(
    keys: KeyRing, meter: Meter, messages: Messages, scope: dict[str, Any], receive: Receive, send: Send
) -> ApiKey | None:
    """Accept the connection and return its key, or close it saying why and return None."""
    given: Credentials | str | None = secret_of(scope)
    await send({"type": "websocket.accept"})
    if isinstance(given, Credentials) and given.secret is None and given.problem is None:
        given = await first_message_key(receive)
        if given is None:
            await send({"type": "websocket.close", "code": 1008, "reason": MISSING_KEY["ws"]})
            return None
    try:
        key, problem = await authenticate(keys, given, "ws")
    except DatabaseUnavailable:
        await send({"type": "websocket.close", "code": 1013, "reason": "key database unreachable: retry shortly"})
        return None
    if problem is not None or key is None:
        await send({"type": "websocket.close", "code": 1008, "reason": problem or "invalid API key"})
        return None
    quota = await quota_for(meter, key)
    if quota.exhausted:
        error = f"monthly limit of {quota.limit} prices reached; the limit resets at {utc_iso(quota.reset_at)}"
        await send({"type": "websocket.send", "text": messages.reply(key.id, 429, None, error).decode()})
        await send({"type": "websocket.close", "code": 1008, "reason": error})
        return None
    return key
