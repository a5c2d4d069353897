"""HTTP/1.1 limits uvicorn's httptools protocol does not set: header size, body size, header
and body time, connections per server and per client address.

httptools (llhttp) accepts headers of any size and uvicorn waits for them forever, so one
client could hold memory with a huge header or hold a connection by sending its headers a
byte at a time (slowloris). This protocol refuses, with an envelope and `Connection: close`:

- request line + headers over MAX_HEADER_BYTES -> 431;
- a body over MAX_BODY_BYTES (declared or sent) -> 413 (no route takes more than a small JSON);
- headers not complete HEADER_TIMEOUT_S after a request starts (or after connecting) -> 408,
  or a quiet close for a connection that never sent a byte;
- a declared body not complete `body_timeout_s` after the headers -> 408 (a client announcing
  `Content-Length: 1000000` and sending nothing held its connection forever);
- more open connections than `max_connections` on this server, or than
  `max_connections_per_ip` from one address -> 503 with Retry-After, closed at once
  (addresses in the trusted proxy networks are exempt from the per-address cap: a load
  balancer carries many clients);
- a response finished before its request's body arrived (a 401 from a route that checks the
  key first) -> the connection is closed instead of reading the rest of the body.

Idle keep-alive connections are closed by uvicorn after `timeout_keep_alive` (transports/server.py).

This is the one module that subclasses uvicorn's HTTP protocol; what it relies on of
`HttpToolsProtocol` is listed in OVERRIDES and ATTRIBUTES, and tests/test_uvicorn_http_guards.py
checks those on the pinned uvicorn over a real connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trinity_beast.domain.envelope import Envelopes, dumps

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5
_STATUS_TEXT = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass
class ConnectionLimits:
    """One server's connection limits and who holds its connections (shared by its protocols)."""

    max_connections: int = 4096  # 0 = no limit
    max_per_ip: int = 256  # 0 = no limit
    body_timeout_s: float = BODY_TIMEOUT_S
    exempt: tuple[str, ...] = ()  # networks not capped per address (trusted proxies)
    per_ip: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    def __post_init__(self) -> None:
        self._exempt = [ipaddress.ip_network(n) for n in self.exempt]

    def is_exempt(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._exempt)

    def admit(self, ip: str, open_now: int) -> str | None:
        """None to accept one more connection from `ip` (counted), else why not."""
        if self.max_connections and open_now > self.max_connections:
            return f"server busy: {self.max_connections} connections open; retry shortly"
        if self.max_per_ip and not self.is_exempt(ip):
            if self.per_ip[ip] >= self.max_per_ip:
                return f"too many connections from your address (limit {self.max_per_ip}); close some and retry"
            self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        if ip in self.per_ip:
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]


# The HttpToolsProtocol methods overridden below (uvicorn and httptools call them), with their
# parameters. A parser callback that raises makes uvicorn's data_received answer through
# send_400_response, which is how a limit stops a request.
OVERRIDES: dict[str, tuple[str, ...]] = {
    "connection_made": ("transport",),
    "connection_lost": ("exc",),
    "data_received": ("data",),
    "send_400_response": ("msg",),
    "on_message_begin": (),
    "on_url": ("url",),
    "on_header": ("name", "value"),
    "on_headers_complete": (),
    "on_body": ("body",),
    "on_message_complete": (),
}
# The HttpToolsProtocol state read here, and what it must be.
ATTRIBUTES: dict[str, str] = {
    "loop": "the event loop serving the connection (for the header timer)",
    "transport": "the connection's transport, set by connection_made (write, close, is_closing)",
    "config": "the uvicorn Config; config.app is the app being served (for the refusal envelope)",
    "parser": "the httptools parser, None once the connection is lost",
    "headers": "the request's (lower-case name, value) byte pairs, complete at on_headers_complete",
    "cycle": "None before the first request, then the current request's cycle with response_complete",
}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envelopes_of(app: Any) -> Envelopes | None:
    """The envelope builder of the app being served (LpoHttp has one; the LRS keeps it in state)."""
    found = getattr(app, "envelopes", None)
    if found is None:
        found = getattr(getattr(app, "state", None), "envelopes", None)
    return found if isinstance(found, Envelopes) else None


def refusal(app: Any, status: int, message: str) -> bytes:
    """A complete HTTP response (envelope body, connection closed) for a request refused below the app."""
    envelopes = envelopes_of(app)
    if envelopes is not None:
        body = dumps(envelopes.error("/", status, message))
    else:
        body = dumps({"status_code": status, "error": message})
    retry = b"retry-after: %d\r\n" % RETRY_AFTER_S if status == 503 else b""
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%bconnection: close\r\n\r\n" % (
        status,
        _STATUS_TEXT.get(status, b"Error"),
        len(body),
        retry,
    )
    return head + body


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body size limits, header and body timeouts
    and connection caps (`limits`: one ConnectionLimits per server, see `with_limits`)."""

    max_header_bytes = MAX_HEADER_BYTES
    max_body_bytes = MAX_BODY_BYTES
    header_timeout_s = HEADER_TIMEOUT_S
    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._body_bytes = 0
        self._started = False  # bytes of the current request have arrived
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused: Refused | None = None  # set by a callback; the parser error that follows sends it
        self._peer: str | None = None  # the address counted in limits.per_ip, until released

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[LimitedHttpTools]:
        """This protocol with its own connection limits (one class per server)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    # ---- timer ---------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._started:
            self._refuse(Refused(408, f"request headers not complete within {self.header_timeout_s:g} s"))
        else:
            self.transport.close()  # connected and said nothing: nobody to answer

    def _body_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered (or answering) already: stop waiting for the body
            return
        self._refuse(Refused(408, f"request body not received within {self.limits.body_timeout_s:g} s"))

    def _refuse(self, exc: Refused) -> None:
        log.info("refused a request: %s", exc.message)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(self.config.app, exc.status, exc.message))
            self.transport.close()

    # ---- protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else "unknown"
        refused = self.limits.admit(peer, len(self.connections))
        if refused is not None:
            self.limits.refused += 1
            log.warning("refused a connection from %s: %s", peer, refused)
            transport.write(refusal(self.config.app, 503, refused))
            transport.close()
            return
        self._peer = peer
        self._arm()

    def _release(self) -> None:
        if self._peer is not None:
            self.limits.release(self._peer)
            self._peer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """A WebSocket leaves this protocol: its address is capped by the WebSocket limits
        (BEAST_WS_MAX_PER_IP) from here on; the server-wide cap still counts it."""
        self._disarm()
        self._release()
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            # Answered before the request's body arrived (refused on its headers): close
            # rather than read a body nobody will use.
            self._disarm()
            self.transport.close()
        super().on_response_complete()

    def data_received(self, data: bytes) -> None:
        if self.parser is None or self.transport.is_closing():  # lost or refused already
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error: ours when a limit raised it."""
        refused, self._refused = self._refused, None
        if refused is None:
            return super().send_400_response(msg)
        if self.cycle is not None and self.cycle.response_complete:
            self._disarm()
            self.transport.close()  # answered already: just stop reading the rest of the body
        else:
            self._refuse(refused)

    def _limit(self, status: int, message: str) -> None:
        """Stop parsing: httptools turns this into a parser error, answered by send_400_response."""
        self._refused = Refused(status, message)
        raise self._refused

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._body_bytes = 0
        self._started = True
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._limit(431, f"request line and headers over {self.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._disarm()
        length = self.parser.get_content_length() if hasattr(self.parser, "get_content_length") else None
        if length is None:
            for name, value in self.headers:
                if name == b"content-length" and value.strip().isdigit():
                    length = int(value)
        if length is not None and length > self.max_body_bytes:
            self._limit(413, f"request body of {length} bytes is over the {self.max_body_bytes}-byte limit")
        chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        if (length or chunked) and not (self.parser.should_upgrade() and self._should_upgrade()):
            self._header_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:
            self._limit(413, f"request body over the {self.max_body_bytes}-byte limit")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._started = False
        self._disarm()
        super().on_message_complete()
