"""What transports/http/guards.py relies on in uvicorn's HttpToolsProtocol, checked on the pinned uvicorn.

LimitedHttpTools overrides uvicorn's protocol callbacks (OVERRIDES), reads its state
(ATTRIBUTES) and stops a request by raising in a parser callback, which uvicorn answers
through send_400_response. The signatures are compared on the class; the rest is observed on a
real connection to the production server config. Each check fails naming the pinned uvicorn
version and what changed (tests/uvicorn_pin.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from trinity_beast.transports.server import bind_tcp, make_server
from uvicorn_pin import require

MODULE = "transports/http/guards.py"
HTTPTOOLS = "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from trinity_beast.transports.http.guards import (
        ATTRIBUTES,
        OVERRIDES,
        LimitedHttpTools,
    )
except ImportError as exc:  # the module subclasses uvicorn's class at import time
    require(False, MODULE, HTTPTOOLS, f"importing it fails: {exc}")


def parameters(function: Any) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(function).parameters if name != "self")


def test_the_overridden_callbacks_keep_their_names_and_parameters() -> None:
    for name, expected in OVERRIDES.items():
        theirs = getattr(HttpToolsProtocol, name, None)
        require(callable(theirs), MODULE, f"HttpToolsProtocol.{name}({', '.join(expected)})", f"it has no {name}")
        require(
            parameters(theirs) == expected,
            MODULE,
            f"HttpToolsProtocol.{name}({', '.join(expected)})",
            f"it is {name}({', '.join(parameters(theirs))})",
        )
        ours = getattr(LimitedHttpTools, name)
        assert ours is not theirs and parameters(ours) == expected, (
            f"LimitedHttpTools.{name} no longer matches OVERRIDES"
        )


def test_the_server_config_runs_the_guarded_protocol() -> None:
    config = make_server(app, "warning").config
    config.load()
    require(
        isinstance(config.http_protocol_class, type) and issubclass(config.http_protocol_class, LimitedHttpTools),
        MODULE,
        "uvicorn.Config(http=<a protocol class>) serving HTTP with that class",
        f"it serves {config.http_protocol_class!r}",
    )


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class Probe(LimitedHttpTools):
    """The guarded protocol with small limits, noting what it saw of uvicorn's state."""

    max_header_bytes = 512
    max_body_bytes = 1000
    made: ClassVar[list[Probe]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.seen: dict[str, Any] = {"running_loop": asyncio.get_running_loop(), "answers_400": [], "requests": []}
        Probe.made.append(self)

    def on_headers_complete(self) -> None:
        headers, cycle_before = list(self.headers), self.cycle
        super().on_headers_complete()
        self.seen["requests"].append({"headers": headers, "cycle_before": cycle_before, "cycle": self.cycle})

    def send_400_response(self, msg: str) -> None:
        self.seen["answers_400"].append((msg, self._refused))
        super().send_400_response(msg)


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[int]:
    """`app` behind the production server config with Probe as its protocol; yields the port."""
    sock = bind_tcp("127.0.0.1", 0, "test")
    server = make_server(app, "warning")
    server.config.http = Probe
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send each request on one connection and read its answer; what arrived (b"" for none) once
    the server closes early. The server must close the connection after the last one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for request in requests:
            writer.write(request)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except asyncio.IncompleteReadError as closed:
                answers.append(closed.partial)
                continue
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            answers.append(head + await asyncio.wait_for(reader.readexactly(length), 30))
        assert await asyncio.wait_for(reader.read(), 30) == b"", "the server kept the connection open"
    finally:
        writer.close()
    return answers


async def test_the_state_and_the_parser_error_path_guards_rely_on() -> None:
    Probe.made.clear()
    async with served() as port:
        ok, again = await exchange(
            port,
            b"POST /a HTTP/1.1\r\nHost: x\r\nX-Probe: One\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        [probe] = Probe.made
        first, second = probe.seen["requests"]

        require(
            ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"\r\n\r\n5"),
            MODULE,
            "a request under the limits reaching the app untouched",
            f"the answer was {ok[:80]!r}",
        )
        require(
            first["headers"] == [(b"host", b"x"), (b"x-probe", b"One"), (b"content-length", b"5")],
            MODULE,
            f"`headers`: {ATTRIBUTES['headers']}",
            f"at on_headers_complete it was {first['headers']!r}",
        )
        require(
            probe.seen["running_loop"] is probe.loop, MODULE, f"`loop`: {ATTRIBUTES['loop']}", f"it is {probe.loop!r}"
        )
        require(
            probe.config.app is app, MODULE, f"`config`: {ATTRIBUTES['config']}", f"config.app is {probe.config.app!r}"
        )
        cycle = first["cycle"]
        require(
            first["cycle_before"] is None and isinstance(getattr(cycle, "response_complete", None), bool),
            MODULE,
            f"`cycle`: {ATTRIBUTES['cycle']}",
            f"it went from {first['cycle_before']!r} to {cycle!r}",
        )

        require(
            again.startswith(b"HTTP/1.1 200") and second["cycle_before"] is cycle and second["cycle"] is not cycle,
            MODULE,
            f"`cycle`: {ATTRIBUTES['cycle']}",
            "a keep-alive request did not get its own cycle",
        )
        deadline = time.monotonic() + 30
        while probe.parser is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        require(probe.parser is None, MODULE, f"`parser`: {ATTRIBUTES['parser']}", f"it is {probe.parser!r}")

        # A header over the limit: on_header raises, uvicorn's data_received catches the parser
        # error and calls send_400_response, which sends our 431 instead.
        [too_big] = await exchange(port, b"GET /c HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 600 + b"\r\n\r\n")
        probe = Probe.made[1]
        seen = probe.seen
        require(
            too_big.startswith(b"HTTP/1.1 431") and b"over 512 bytes" in too_big,
            MODULE,
            "an exception raised in a parser callback being answered through send_400_response",
            f"the answer was {too_big[:120]!r}; send_400_response saw {seen['answers_400']!r}",
        )
        require(
            len(seen["answers_400"]) == 1 and seen["answers_400"][0][1] is not None,
            MODULE,
            "send_400_response being called once for the refused request",
            f"it was called with {seen['answers_400']!r}",
        )
        require(
            probe.transport.is_closing(),
            MODULE,
            f"`transport`: {ATTRIBUTES['transport']}",
            f"{probe.transport!r} is still open after the refusal",
        )


async def test_a_body_over_the_limit_stops_in_on_body() -> None:
    Probe.made.clear()
    chunked = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(5)) + b"0\r\n\r\n"
    async with served() as port:
        [answer] = await exchange(port, b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    require(
        answer.startswith(b"HTTP/1.1 413") and b"request body over the 1000-byte limit" in answer,
        MODULE,
        "HttpToolsProtocol.on_body(body) receiving each chunk of a body before the app does, a raise there "
        "being answered through send_400_response",
        f"the answer was {answer[:120]!r}",
    )
