"""Serving an ASGI app on granian (BEAST_SERVER=granian), embedded in this process's event loop.

granian does HTTP/1.1 and WebSockets in Rust (hyper, tungstenite) and calls the ASGI app on
our loop, so the LPO app keeps sharing the process's runtime (the live prices, the meter, the
WebSocket hub) exactly as under uvicorn; only the protocol work leaves Python. It serves the
socket we bound (transports/server.py: one clear error for a taken port, SO_REUSEPORT for
`--workers`), handed to it as a duplicate descriptor. transports/server.serve_granian wraps the
app first: the body limits (transports/http/body_limit.py) and, behind BEAST_TRUSTED_PROXIES,
uvicorn's X-Forwarded-For middleware, as under uvicorn.

What it keeps of the HTTP guards (transports/http/guards.py), checked by
tests/integration/test_granian_server.py on the pinned granian:
- request line + headers over MAX_HEADER_BYTES: refused with 431 and the connection closed
  (hyper's read buffer, `max_buffer_size`); the body is hyper's, empty, not our envelope;
- headers not complete HEADER_TIMEOUT_S after the request starts (slowloris), and a
  connection that never sends a byte: closed after HEADER_TIMEOUT_S, without a 408 answer;
- idle keep-alive connections: closed after HEADER_TIMEOUT_S (uvicorn: KEEP_ALIVE_S).
What it lacks (docs/configuration.md, BEAST_SERVER): the 431/408 envelopes and any 408 for slow
headers; the connection caps (BEAST_MAX_CONNECTIONS, BEAST_MAX_CONNECTIONS_PER_IP: no 503,
hyper takes every connection); the WebSocket frame limit: tungstenite's own limits apply
(16 MiB frame, 64 MiB message) instead of MAX_FRAME_BYTES, so a large frame is read and
answered instead of closing with 1009. The WebSocket fast path (transports/ws/uvicorn_direct.py)
is uvicorn's: under granian every update goes through the client's writer (ASGI send).

This is the one module that imports granian. What it relies on beyond granian's documented
embedded `Server` (constructor, serve(), stop()) is listed in RELIED_ON and checked by that test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

from trinity_beast.transports import redact
from trinity_beast.transports.http.guards import HEADER_TIMEOUT_S, MAX_HEADER_BYTES

log = logging.getLogger(__name__)

BACKLOG = 2048  # as transports/server.bind_tcp listens
HYPER_MIN_BUFFER = 8192  # hyper refuses a smaller read buffer

# What this module uses of granian beyond the embedded Server's constructor, serve() and stop().
RELIED_ON: dict[str, str] = {
    "granian._granian.SocketHolder(fd, uds, backlog)": "a listening socket granian serves, built from a descriptor",
    "Server._init_shared_socket()": "called once at start-up to make the listening socket; sets _ssp and _shd",
    "Server._ssp / Server._shd": "the socket spec (None: serve _shd) and the SocketHolder the worker serves",
    "HTTP1Settings(header_read_timeout=ms, keep_alive, max_buffer_size=bytes)": "hyper's header timeout and buffer",
}


def http1_settings(header_timeout_s: float = HEADER_TIMEOUT_S) -> HTTP1Settings:
    """The guards' limits in hyper's terms."""
    return HTTP1Settings(
        header_read_timeout=int(header_timeout_s * 1000),
        keep_alive=True,
        max_buffer_size=max(HYPER_MIN_BUFFER, MAX_HEADER_BYTES),
        pipeline_flush=False,
    )


class GranianServer(Server):
    """granian's embedded server on a socket we bound."""

    def __init__(self, app: Any, sock: socket.socket, log_level: str) -> None:
        host, port = sock.getsockname()[:2]
        level = log_level.lower() if log_level.lower() in LogLevels.__members__ else "warning"
        super().__init__(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,  # no lifespan: the runtime starts and stops around the servers
            http=HTTPModes.http1,
            websockets=True,
            backlog=BACKLOG,
            runtime_threads=1,
            http1_settings=http1_settings(HEADER_TIMEOUT_S),
            log_enabled=True,
            log_level=LogLevels(level),
            # granian's messages go through our handlers (and the secret filter), not its own.
            log_dictconfig={"loggers": {"_granian": {"handlers": [], "propagate": True}}},
        )
        redact.install()  # after granian's logging set-up, as after uvicorn's
        self.sock = sock

    def _init_shared_socket(self) -> None:
        served_fd = os.dup(self.sock.fileno())  # granian owns the duplicate and closes it
        self._ssp = None
        self._shd = SocketHolder(served_fd, False, BACKLOG)  # type: ignore[assignment,call-arg]


async def serve(
    app: Any,
    sock: socket.socket,
    log_level: str,
    stop: asyncio.Event,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve `app` on `sock` until `stop` is set, run `before_stop`, then let granian finish its connections."""
    server = GranianServer(app, sock, log_level)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            if before_stop is not None:
                try:
                    await before_stop()
                except Exception:  # stopping goes on whatever happens here
                    log.exception("closing before granian stops failed")
            server.stop()  # type: ignore[no-untyped-call]
        stopper.cancel()
        await task
