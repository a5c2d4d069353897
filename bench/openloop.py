"""Open-loop load at a fixed offered rate: latency that a waiting client cannot hide.

A closed-loop client (wrk) sends the next request only when an answer came back, so when
the server stalls the client stops asking and the stall never shows in the percentiles
(coordinated omission). Here requests are due on a fixed schedule (`rate` per second from
the start) and each one's latency is measured from the moment it was due, whether it went
out at once or waited for a free connection. wrk2 does this; it is not in Debian.

`http HOST PORT PATH RATE SECONDS CONNECTIONS [HEADER ...]` (HTTP/1.1 keep-alive, one request
in flight per connection) and `udp HOST PORT PAYLOAD_FILE RATE SECONDS SOCKETS` (answers on
a socket are matched to its requests in order, as the protocol has no request id; one not back
within 1 s counts as lost, and until then later answers on that socket are matched one request
early, so a run with losses reads pessimistic, never flattering) print
JSON: offered and achieved rate, completed, errors, non-2xx, p50/p90/p99/p99.9/max in ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

TICK_S = 0.0005  # how often the schedule is checked; requests due in between go out together


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {k: float("nan") for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")}
    ordered = sorted(latencies)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 3)

    return {
        "p50_ms": at(50),
        "p90_ms": at(90),
        "p99_ms": at(99),
        "p999_ms": at(99.9),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


class Conn(asyncio.Protocol):
    """One keep-alive connection: sends a request, reads one answer (Content-Length framed)."""

    def __init__(self, run: HttpRun) -> None:
        self.run = run
        self.buf = bytearray()
        self.due = 0.0
        self.transport: asyncio.Transport | None = None
        self.need = -1  # bytes of the current answer (head + body) once the head is in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.run.idle.append(self)

    def send(self, due: float) -> None:
        self.due = due
        self.transport.write(self.run.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                self.need = end + 4 + length
                self.ok = head[9:10] == b"2"
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = -1
            self.run.done(self, self.ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self)


class HttpRun:
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.idle: deque[Conn] = deque()
        self.backlog: deque[float] = deque()  # due times of requests waiting for a connection
        self.latencies: list[float] = []
        self.non2xx = 0
        self.errors = 0
        self.stopping = False

    def offer(self, due: float) -> None:
        if self.idle:
            self.idle.popleft().send(due)
        else:
            self.backlog.append(due)

    def done(self, conn: Conn, ok: bool) -> None:
        if not self.stopping:
            self.latencies.append(time.perf_counter() - conn.due)
            self.non2xx += not ok
        if self.backlog:
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: Conn) -> None:
        if not self.stopping:
            self.errors += 1
        if conn in self.idle:
            self.idle.remove(conn)


async def schedule(rate: float, seconds: float, offer) -> int:  # type: ignore[no-untyped-def]
    """Call offer(due) for every request due at `rate`/s over `seconds`; returns how many."""
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) * rate) + 1)
        while sent < due_count:
            offer(start + sent / rate)
            sent += 1
        await asyncio.sleep(TICK_S)
    return sent


async def http(
    host: str, port: int, path: str, rate: float, seconds: float, connections: int, headers: list[str]
) -> dict:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers]
    run = HttpRun(("\r\n".join(lines) + "\r\n\r\n").encode())
    loop = asyncio.get_running_loop()
    transports = []
    for _ in range(connections):
        transport, _ = await loop.create_connection(lambda: Conn(run), host, port)
        transports.append(transport)
    started = time.perf_counter()
    sent = await schedule(rate, seconds, run.offer)
    deadline = time.perf_counter() + 5
    while len(run.latencies) + run.errors < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    run.stopping = True
    for transport in transports:
        transport.close()
    return {
        "offered_rps": rate,
        "achieved_rps": round(len(run.latencies) / elapsed, 1),
        "sent": sent,
        "completed": len(run.latencies),
        "errors": sent - len(run.latencies),
        "connections_lost": run.errors,
        "non2xx": run.non2xx,
        "backlog_left": len(run.backlog),
        **percentiles(run.latencies),
    }


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self, run: UdpRun) -> None:
        self.run = run
        self.pending: deque[float] = deque()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        now = time.perf_counter()
        while self.pending and now - self.pending[0] > 1.0:  # answers older than 1 s are lost
            self.pending.popleft()
            self.run.lost += 1
        if self.pending:
            self.run.latencies.append(now - self.pending.popleft())
            self.run.non2xx += b'"status_code":200' not in data


class UdpRun:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.peers: list[UdpPeer] = []
        self.next = 0
        self.latencies: list[float] = []
        self.lost = 0
        self.non2xx = 0

    def offer(self, due: float) -> None:
        peer = self.peers[self.next]
        self.next = (self.next + 1) % len(self.peers)
        peer.pending.append(due)
        peer.transport.sendto(self.payload)  # type: ignore[union-attr]


async def udp(host: str, port: int, payload: bytes, rate: float, seconds: float, sockets: int) -> dict:
    run = UdpRun(payload)
    loop = asyncio.get_running_loop()
    for _ in range(sockets):
        _, peer = await loop.create_datagram_endpoint(
            lambda: UdpPeer(run), remote_addr=(host, port), family=socket.AF_INET
        )
        run.peers.append(peer)
    started = time.perf_counter()
    sent = await schedule(rate, seconds, run.offer)
    deadline = time.perf_counter() + 2
    while len(run.latencies) + run.lost < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    for peer in run.peers:
        peer.transport.close()  # type: ignore[union-attr]
    return {
        "offered_rps": rate,
        "achieved_rps": round(len(run.latencies) / elapsed, 1),
        "sent": sent,
        "completed": len(run.latencies),
        "errors": sent - len(run.latencies),
        "non2xx": run.non2xx,
        **percentiles(run.latencies),
    }


def main() -> None:
    import uvloop

    kind = sys.argv[1]
    if kind == "http":
        host, port, path, rate, seconds, conns, *headers = sys.argv[2:]
        result = uvloop.run(http(host, int(port), path, float(rate), float(seconds), int(conns), headers))
    elif kind == "udp":
        host, port, payload, rate, seconds, socks = sys.argv[2:8]
        result = uvloop.run(udp(host, int(port), Path(payload).read_bytes(), float(rate), float(seconds), int(socks)))
    else:
        raise SystemExit(f"unknown load kind {kind!r}")
    os.set_blocking(1, True)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
