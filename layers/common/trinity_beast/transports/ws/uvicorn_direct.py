"""The WebSocket fast path's one dependency on uvicorn's internals, kept in one place.

Writing a ready frame straight to the socket of uvicorn's sans-io WebSocket connection skips
the per-client ASGI send and frame encoding (the cost of a push to a thousand clients). That
reaches past ASGI into uvicorn's `WebSocketsSansIOProtocol` (the `ws="websockets-sansio"`
of transports/server.py), found as the object behind the ASGI `send` it hands the app, and
uses exactly what RELIED_ON lists: its `transport` (the asyncio transport we write to), its
`writable` event (uvicorn's backpressure flag, cleared by pause_writing) and `close_sent`
(no frame may follow a close). tests/test_uvicorn_ws_direct.py checks those on the pinned
uvicorn over a real connection; any other server gets None and the portable ASGI path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# What this module uses of uvicorn's connection, and what it must be once connected.
RELIED_ON: dict[str, str] = {
    "transport": "the connection's asyncio transport (write, is_closing); frames written to it reach the client",
    "writable": "an asyncio.Event, cleared by pause_writing() and set by resume_writing() (backpressure)",
    "close_sent": "a bool, True once the close frame went out",
}


class DirectSocket:
    """A uvicorn WebSocket connection we may write complete, unmasked server frames to."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def write_if_ready(self, *parts: bytes) -> bool:
        """Write the frame made of `parts` now if the connection is open and taking data;
        False leaves it unsent."""
        conn = self.conn
        if conn.close_sent or not conn.writable.is_set() or conn.transport.is_closing():
            return False
        conn.transport.write(b"".join(parts))
        return True


def direct_connection(send: Callable[[dict[str, Any]], Awaitable[None]]) -> DirectSocket | None:
    """The uvicorn connection behind an ASGI `send`, if uvicorn's sans-io WebSocket serves it."""
    conn = getattr(send, "__self__", None)
    if isinstance(conn, WebSocketsSansIOProtocol):
        return DirectSocket(conn)
    return None
