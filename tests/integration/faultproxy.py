"""A fault-injecting TCP proxy for tests: put it in front of Redis or PostgreSQL and break it.

It runs in its own thread and event loop, so sync tests, async tests and servers running in
other threads can all use it. Modes:

- `restore()`: forward bytes both ways (the default);
- `cut()`: close every open connection (a network blip, a server restart); keeps accepting;
- `refuse()`: close every connection and stop listening (server down: connection refused);
- `stall()`: keep connections open but forward nothing, and accept new ones that also get
  nothing (a paused server, SIGSTOP, a black-holed network); `restore()` lets held bytes through.

The shared services are never touched: only this proxy's connections are.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.mode = "pass"
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._server: asyncio.AbstractServer | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._setup())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    # ---- faults --------------------------------------------------------------------------------
    def restore(self) -> None:
        self._call(self._restore())

    def cut(self) -> None:
        self._call(self._close_conns())

    def refuse(self) -> None:
        self._call(self._close_all(listen=True))

    def stall(self) -> None:
        self._call(self._stall())

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    # ---- internals -----------------------------------------------------------------------------
    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _setup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _restore(self) -> None:
        self.mode = "pass"
        if self._server is None:
            await self._listen()
        assert self._flowing is not None
        self._flowing.set()

    async def _stall(self) -> None:
        self.mode = "stall"
        assert self._flowing is not None
        self._flowing.clear()
        if self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._close_all(listen=False)
        assert self._flowing is not None
        self._flowing.set()  # release pumps held by a stall, so they see their sockets closed
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _close_conns(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # RST: the peer sees the connection die at once
        self._writers.clear()

    async def _close_all(self, listen: bool) -> None:
        if listen:
            self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._close_conns()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # stalled: hold the bytes until restore()
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


@contextlib.contextmanager
def fault_proxy(host: str, port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(host, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
