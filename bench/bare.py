"""Baselines measured in the same run as the real servers: they return fixed bytes.

`http PORT FILE [WORKERS]`: a bare ASGI app on uvicorn with the same server settings (and
worker count) `beast serve` uses, answering every request with the bytes in FILE. `udp PORT FILE`: a bare asyncio UDP
server answering every datagram with those bytes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def http(port: int, body: bytes, workers: int = 1) -> None:
    """`workers` processes on the port (SO_REUSEPORT), as `beast serve --workers N` runs."""
    import os

    import uvloop

    from trinity_beast.transports.server import bind_tcp, make_server

    for _ in range(workers - 1):
        if os.fork() == 0:
            break

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = bind_tcp("127.0.0.1", port, "bench", reuse_port=True)
    uvloop.run(make_server(app, "warning").serve(sockets=[sock]))


def udp(port: int, body: bytes) -> None:
    import uvloop

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.transport = transport

        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            self.transport.sendto(body, addr)

    async def main() -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
        await asyncio.Event().wait()

    uvloop.run(main())


if __name__ == "__main__":
    kind, port, path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if kind == "http":
        http(port, path.read_bytes(), int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    else:
        udp(port, path.read_bytes())
