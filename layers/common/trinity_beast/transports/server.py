"""Running several ASGI servers in one process under one signal handler.

uvicorn is run here (the one module that runs it); a listener whose `server` is "granian"
(BEAST_SERVER) is served by transports/granian_server.py instead, imported only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from trinity_beast.domain.settings import Settings
from trinity_beast.transports import redact
from trinity_beast.transports.http.body_limit import BodyLimit
from trinity_beast.transports.http.guards import ConnectionLimits, LimitedHttpTools
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
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:  # the host, not the port
            raise StartupError(
                f"BEAST_HOST: cannot listen on {host}: {exc.strerror}; set BEAST_HOST to an address of this"
                " machine (127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None
        what = "listen on" if kind == socket.SOCK_STREAM else "listen on UDP"
        raise StartupError(
            f"{setting}: cannot {what} {host}:{port}: {exc.strerror}; stop what uses it or set {setting} to a free port"
        ) from None
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
    server: str = "uvicorn"  # or "granian" (BEAST_SERVER, domain.settings.SERVERS)
    before_stop: Callable[[], Awaitable[None]] | None = None  # granian: close what it would drop (WebSockets)


KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this long


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_connections=settings.max_connections,
        max_per_ip=settings.max_connections_per_ip,
        body_timeout_s=settings.body_timeout_s,
        exempt=settings.trusted_proxies,
    )


def make_server(app: Any, log_level: str, settings: Settings | None = None) -> uvicorn.Server:
    """uvicorn with the limits one client must not exceed (transports/http/guards.py): header and body size,
    header and body time, connections overall and per address, idle keep-alive time,
    WebSocket frame size. `X-Forwarded-For` is believed only from BEAST_TRUSTED_PROXIES
    (the client is the right-most address not in those networks); with none set, never."""
    settings = settings or Settings()
    trusted = list(settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        http=LimitedHttpTools.with_limits(connection_limits(settings)),
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
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


async def run_until_signal(listeners: list[Listener], log_level: str, settings: Settings | None = None) -> None:
    """Serve every listener until SIGINT/SIGTERM (or one server fails), then drain them all."""
    servers = [
        (make_server(item.app, log_level, settings), item.sock) for item in listeners if item.server == "uvicorn"
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    tasks += [
        asyncio.create_task(serve_granian(item.app, item.sock, log_level, settings, stop, item.before_stop))
        for item in listeners
        if item.server == "granian"
    ]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def granian_app(app: Any, settings: Settings | None = None) -> Any:
    """`app` as granian serves it: with the body limits uvicorn's protocol would enforce
    (transports/http/body_limit.py) and, behind BEAST_TRUSTED_PROXIES, the client address from
    X-Forwarded-For by the same rule as make_server (uvicorn's ProxyHeadersMiddleware)."""
    settings = settings or Settings()
    app = BodyLimit(app, body_timeout_s=settings.body_timeout_s)
    trusted = list(settings.trusted_proxies)
    return ProxyHeadersMiddleware(app, trusted_hosts=trusted) if trusted else app


async def serve_granian(
    app: Any,
    sock: socket.socket,
    log_level: str,
    settings: Settings | None,
    stop: asyncio.Event,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve `app` on granian (BEAST_SERVER=granian) on `sock` until `stop` is set; `before_stop`
    runs first (granian drops open WebSockets without a close frame; uvicorn sends them 1012)."""
    from trinity_beast.transports import granian_server

    await granian_server.serve(granian_app(app, settings), sock, log_level, stop, before_stop)
