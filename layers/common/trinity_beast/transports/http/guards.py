"""HTTP/1.1 limits uvicorn's httptools protocol does not set: header size, body size, header time.

httptools (llhttp) accepts headers of any size and uvicorn waits for them forever, so one
client could hold memory with a huge header or hold a connection by sending its headers a
byte at a time (slowloris). This protocol refuses, with an envelope and `Connection: close`:

- request line + headers over MAX_HEADER_BYTES -> 431;
- a body over MAX_BODY_BYTES (declared or sent) -> 413 (no route takes more than a small JSON);
- headers not complete HEADER_TIMEOUT_S after a request starts (or after connecting) -> 408,
  or a quiet close for a connection that never sent a byte.

Idle keep-alive connections are closed by uvicorn after `timeout_keep_alive` (transports/server.py).

This is the one module that subclasses uvicorn's HTTP protocol; what it relies on of
`HttpToolsProtocol` is listed in OVERRIDES and ATTRIBUTES, and tests/test_uvicorn_http_guards.py
checks those on the pinned uvicorn over a real connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trinity_beast.domain.envelope import Envelopes, dumps

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
HEADER_TIMEOUT_S = 10.0
_STATUS_TEXT = {408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}

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
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _STATUS_TEXT.get(status, b"Error"), len(body))
    )
    return head + body


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body size limits and a header timeout."""

    max_header_bytes = MAX_HEADER_BYTES
    max_body_bytes = MAX_BODY_BYTES
    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._body_bytes = 0
        self._started = False  # bytes of the current request have arrived
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused: Refused | None = None  # set by a callback; the parser error that follows sends it

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

    def _refuse(self, exc: Refused) -> None:
        log.info("refused a request: %s", exc.message)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(self.config.app, exc.status, exc.message))
            self.transport.close()

    # ---- protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:
            self._limit(413, f"request body over the {self.max_body_bytes}-byte limit")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._started = False
        super().on_message_complete()
