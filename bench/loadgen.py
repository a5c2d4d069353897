"""Load generators that run in their own processes: UDP requests and WebSocket clients.

`udp HOST PORT PAYLOAD_FILE SECONDS INFLIGHT` prints JSON {requests, rps, p50_ms, p99_ms, errors}.
`ws URL ASSETS CLIENTS SECONDS` keeps CLIENTS subscribed and prints JSON
{clients, deliveries, latencies_ms sample} where latency = receive time - the update's timestamp_ms.
`idle URL CLIENTS HOLD_FILE` opens CLIENTS idle connections, writes "ready" to HOLD_FILE,
and holds them until the file is removed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import resource
import socket
import sys
import time
from pathlib import Path


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def udp(host: str, port: int, payload: bytes, seconds: float, inflight: int) -> dict:
    """`inflight` request/response loops over their own sockets, for `seconds`."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal errors
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((host, port))
        try:
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                await loop.sock_sendall(sock, payload)
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 1.0)
                except TimeoutError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)
                if b'"status_code":200' not in data:
                    errors += 1
        finally:
            sock.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "errors": errors,
    }


def masked_text_frame(payload: bytes) -> bytes:
    """A client-to-server text frame (RFC 6455: clients mask what they send)."""
    mask = os.urandom(4)
    n = len(payload)
    header = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawFeedClient(asyncio.Protocol):
    """A minimal WebSocket client that counts the server's frames straight off the byte stream.

    The `websockets` library spends ~15 us of Python per message; at a hundred thousand
    messages a second on the same two cores that would measure the client, not the server.
    This one does the handshake, answers pings, counts text frames that are price updates
    and decodes one in SAMPLE_EVERY for the publish-to-receive latency.
    """

    SAMPLE_EVERY = 25

    def __init__(self, request: bytes, subscribe: bytes, stats: dict, snapshots: int = 1) -> None:
        self.request = request
        self.subscribe = subscribe
        self.stats = stats
        self.buf = bytearray()
        self.upgraded = False
        self.snapshots = snapshots  # the current prices sent on subscribe, one per asset: not updates
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(bytes(self.buf[:80]).decode("latin-1")))
                return
            del self.buf[: end + 4]
            self.upgraded = True
            self.transport.write(masked_text_frame(self.subscribe))
            self.ready.set_result(None)
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + n:
                break
            start = pos + head
            if opcode == 1 and buf.find(b'"type":"price"', start, start + n) >= 0:
                if self.snapshots:  # the price sent on subscribe carries its original, older time
                    self.snapshots -= 1
                    pos = start + n
                    continue
                self.stats["deliveries"] += 1
                if self.stats["deliveries"] % self.SAMPLE_EVERY == 0:
                    msg = json.loads(bytes(buf[start : start + n]))
                    self.stats["latencies"].append(time.time() * 1000 - msg["data"]["timestamp_ms"])
            elif opcode == 9:  # ping: answer, or the server closes us
                pong = bytearray(masked_text_frame(bytes(buf[start : start + n])))
                pong[0] = 0x8A
                self.transport.write(bytes(pong))
            elif opcode == 8:
                self.transport.close()
            pos = start + n
        del buf[:pos]


async def ws(url: str, assets: list[str], clients: int, seconds: float, spread: bool = False) -> dict:
    """`clients` connections each watching every asset of `assets`, or with `spread` one asset each
    (client i watches assets[i % len(assets)])."""
    from urllib.parse import urlsplit

    _raise_fd_limit()
    parts = urlsplit(url)
    request = (
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    watches = [[a] for a in assets] if spread else [assets]
    stats: dict = {"deliveries": 0, "latencies": []}
    loop = asyncio.get_running_loop()
    connected = 0
    transports = []
    for i in range(clients):
        watched = watches[i % len(watches)]
        subscribe = json.dumps({"subscribe": watched}).encode()
        transport, client = await loop.create_connection(
            functools.partial(RawFeedClient, request, subscribe, stats, len(watched)), parts.hostname, parts.port
        )
        try:
            await asyncio.wait_for(client.ready, 30)
            connected += 1
        except Exception:
            transport.close()
            continue
        transports.append(transport)
    await asyncio.sleep(seconds)
    for transport in transports:
        transport.close()
    sample = random.sample(stats["latencies"], min(len(stats["latencies"]), 3000))  # bounded: the parent pools them
    return {"clients": connected, "deliveries": stats["deliveries"], "latencies_ms": sample}


async def idle(url: str, clients: int, hold: Path) -> None:
    from websockets.asyncio.client import connect

    _raise_fd_limit()
    conns = []
    for i in range(0, clients, 200):
        batch = await asyncio.gather(
            *(connect(url, compression=None, open_timeout=60, ping_interval=None) for _ in range(min(200, clients - i)))
        )
        conns.extend(batch)
    hold.write_text("ready")
    while hold.exists():
        await asyncio.sleep(0.2)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def main() -> None:
    import uvloop

    kind = sys.argv[1]
    if kind == "udp":
        host, port, path, seconds, inflight = sys.argv[2:7]
        result = uvloop.run(udp(host, int(port), Path(path).read_bytes(), float(seconds), int(inflight)))
    elif kind == "ws":
        url, assets, clients, seconds = sys.argv[2:6]
        spread = sys.argv[6:7] == ["spread"]
        result = uvloop.run(ws(url, assets.split(","), int(clients), float(seconds), spread))
    elif kind == "idle":
        url, clients, hold = sys.argv[2:5]
        uvloop.run(idle(url, int(clients), Path(hold)))
        return
    else:
        raise SystemExit(f"unknown load kind {kind!r}")
    os.set_blocking(1, True)  # the event loop may have left stdout non-blocking
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
