"""What transports/ws/uvicorn_direct.py relies on, checked on the pinned uvicorn over a real connection.

The fast path writes ready frames to the transport of uvicorn's sans-io WebSocket connection,
found behind the ASGI `send`, and trusts its `writable` and `close_sent`. Each check below
fails naming the pinned uvicorn version and what changed (tests/uvicorn_pin.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from trinity_beast.transports.server import bind_tcp, make_server
from trinity_beast.transports.ws.frames import text_frame_header
from uvicorn_pin import require

MODULE = "transports/ws/uvicorn_direct.py"
SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol"

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol,
    )

    from trinity_beast.transports.ws.uvicorn_direct import (
        RELIED_ON,
        DirectSocket,
        direct_connection,
    )
except ImportError as exc:  # the module imports uvicorn's class at import time
    require(False, MODULE, SANSIO, f"importing it fails: {exc}")


async def nothing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    pass


def test_the_server_config_serves_websockets_with_the_class_the_fast_path_knows() -> None:
    config = make_server(nothing, "warning").config
    config.load()
    require(
        config.ws_protocol_class is WebSocketsSansIOProtocol,
        MODULE,
        f'ws="websockets-sansio" (transports/server.py) loading {SANSIO}',
        f"it loads {config.ws_protocol_class!r}",
    )
    for hook in ("pause_writing", "resume_writing"):
        require(
            callable(getattr(WebSocketsSansIOProtocol, hook, None)),
            MODULE,
            f"WebSocketsSansIOProtocol.{hook}() driving `writable`",
            f"it has no {hook}",
        )


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` behind the production server config on a free loopback port; yields its ws:// URL."""
    sock = bind_tcp("127.0.0.1", 0, "test")
    server = make_server(app, "warning")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_frames_written_to_the_connection_reach_the_client_and_respect_backpressure_and_close() -> None:
    handed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        handed.set_result(send)
        await finished.wait()  # the test drives the connection; returning would close it

    async with served(app) as url, connect(url, max_size=None) as ws:
        try:
            send = await asyncio.wait_for(handed, 30)
            conn = getattr(send, "__self__", None)
            require(
                isinstance(conn, WebSocketsSansIOProtocol),
                MODULE,
                f"the ASGI send of a WebSocket connection being a bound method of {SANSIO}",
                f"send is {send!r} (bound to {type(conn).__name__})",
            )
            direct = direct_connection(send)
            assert isinstance(direct, DirectSocket)

            transport = getattr(conn, "transport", None)
            require(
                callable(getattr(transport, "write", None))
                and callable(getattr(transport, "is_closing", None))
                and not transport.is_closing(),
                MODULE,
                f"`transport`: {RELIED_ON['transport']}",
                f"it is {transport!r}",
            )
            writable = getattr(conn, "writable", None)
            require(
                isinstance(writable, asyncio.Event) and writable.is_set(),
                MODULE,
                f"`writable`: {RELIED_ON['writable']}, set on an open connection",
                f"it is {writable!r}",
            )
            require(
                getattr(conn, "close_sent", None) is False,
                MODULE,
                f"`close_sent`: {RELIED_ON['close_sent']}, False on an open connection",
                f"it is {getattr(conn, 'close_sent', 'missing')!r}",
            )

            # A frame written to the transport arrives, and uvicorn's own sends still work after it.
            payload = b'{"direct":1}'
            assert direct.write_if_ready(text_frame_header(len(payload)), payload)
            await send({"type": "websocket.send", "text": "via asgi"})
            got = [await asyncio.wait_for(ws.recv(), 30) for _ in range(2)]
            require(
                got == ['{"direct":1}', "via asgi"],
                MODULE,
                "a ready frame written to `transport` arriving in order with uvicorn's own sends",
                f"the client received {got!r}",
            )

            # Backpressure: a client that stops reading fills the buffers until uvicorn clears `writable`.
            ws.transport.pause_reading()
            chunk = b"x" * 16384
            frame = text_frame_header(len(chunk)) + chunk
            written = 0
            while direct.write_if_ready(frame):
                written += 1
                require(
                    written < 4096,
                    MODULE,
                    f"`writable`: {RELIED_ON['writable']}",
                    f"it stayed set after {written * len(chunk) >> 20} MiB written to a client reading nothing",
                )
            require(
                not conn.writable.is_set(),
                MODULE,
                f"`writable`: {RELIED_ON['writable']}",
                "writing stopped for another reason",
            )
            ws.transport.resume_reading()
            for _ in range(written):
                assert await asyncio.wait_for(ws.recv(), 30) == chunk.decode()
            deadline = time.monotonic() + 30
            while not conn.writable.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            require(
                conn.writable.is_set(),
                MODULE,
                f"`writable`: {RELIED_ON['writable']}",
                "it stayed clear after the client read everything",
            )

            # After uvicorn sent the close frame, `close_sent` keeps further frames off the wire.
            await send({"type": "websocket.close", "code": 1000, "reason": "done"})
            require(
                conn.close_sent is True,
                MODULE,
                f"`close_sent`: {RELIED_ON['close_sent']}",
                f"it is {conn.close_sent!r} after the ASGI close",
            )
            assert not direct.write_if_ready(frame)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1000,
                "done",
            )
        finally:
            finished.set()


async def test_any_other_send_gets_the_portable_path() -> None:
    async def plain_send(message: dict[str, Any]) -> None:
        pass

    class Other:
        writable = asyncio.Event()
        transport = None
        close_sent = False

        async def send(self, message: dict[str, Any]) -> None:
            pass

    assert direct_connection(plain_send) is None
    assert direct_connection(Other().send) is None
