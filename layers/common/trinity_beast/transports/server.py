"""Running several ASGI servers in one process under one signal handler.

uvicorn is run here (the one module that runs it); a listener whose `server` is "granian"
is served by transports/granian_server.py instead (BEAST_SERVER), imported only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from dataclasses import dataclass
from typing import Any, Iterator

import uvicorn

from trinity_beast.transports import redact
from trinity_beast.transports.http.guards import LimitedHttpTools
from trinity_beast.transports.ws.frames import MAX_FRAME_BYTES


class StartupError(RuntimeError):
    """Start-up cannot go on; the message says why in one line."""


def _bound(kind: int, host: str, port: int, setting: str, reuse_port: bool) -> socket.socket:
    """A socket bound to host:port, or StartupError: a taken port is one clear line naming the setting.

    `reuse_port`: several worker processes bind the same port and the kernel spreads the load
    evenly over them (SO_REUSEPORT).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        what = "listen on" if kind == socket.SOCK_STREAM else "listen on UDP"
        raise StartupError(f"{setting}: cannot {what} {host}:{port}: {exc.strerror}") from None
    return sock


def bind_tcp(host: str, port: int, setting: str, reuse_port: bool = False) -> socket.socket:
    sock = _bound(socket.SOCK_STREAM, host, port, setting, reuse_port)
    sock.listen(2048)
    return sock


def bind_udp(host: str, port: int, setting: str, reuse_port: bool = False) -> socket.socket:
    sock = _bound(socket.SOCK_DGRAM, host, port, setting, reuse_port)
    sock.setblocking(False)
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host process handles signals once for all
    its servers (`run_until_signal`, or whoever embeds one, such as the exchange simulator)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Listener:
    app: Any
    sock: socket.socket
    server: str = "uvicorn"  # or "granian" (domain.settings.SERVERS)


KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this long


def make_server(app: Any, log_level: str) -> uvicorn.Server:
    """uvicorn with the limits one client must not exceed (transports/http/guards.py): header and body size,
    header time, idle keep-alive time, WebSocket frame size."""
    config = uvicorn.Config(
        app,
        http=LimitedHttpTools,
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="off",
        access_log=False,
        log_level=log_level.lower(),
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=10,
        ws="websockets-sansio",
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,  # compression doubles the cost of every push
    )
    redact.install()  # after uvicorn configured its log handlers
    return QuietServer(config)


async def run_until_signal(listeners: list[Listener], log_level: str) -> None:
    """Serve every listener until SIGINT/SIGTERM (or one server fails), then drain them all."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    uvicorns = [(make_server(item.app, log_level), item.sock) for item in listeners if item.server == "uvicorn"]
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in uvicorns]
    others = [item for item in listeners if item.server != "uvicorn"]
    if others:
        from trinity_beast.transports import granian_server

        tasks += [asyncio.create_task(granian_server.serve(item.app, item.sock, log_level, stop)) for item in others]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        for server, _ in uvicorns:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
