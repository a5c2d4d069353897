"""Load generators that run in their own processes: UDP requests and WebSocket clients.

`udp HOST PORT PAYLOAD_FILE SECONDS INFLIGHT` prints JSON {requests, rps, p50_ms, p99_ms, errors}.
`ws URL ASSETS CLIENTS SECONDS` keeps CLIENTS subscribed and prints JSON
{clients, deliveries, latencies_ms sample} where latency = receive time - the update's timestamp.
`idle URL CLIENTS HOLD_FILE` opens CLIENTS idle connections, writes "ready" to HOLD_FILE,
and holds them until the file is removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import time
from datetime import datetime
from pathlib import Path


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


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
                except asyncio.TimeoutError:
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


def _parse_ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def ws(url: str, assets: list[str], clients: int, seconds: float) -> dict:
    from websockets.asyncio.client import connect

    _raise_fd_limit()
    deliveries = 0
    latencies: list[float] = []
    connected = 0
    stop = time.time() + seconds

    async def client() -> None:
        nonlocal deliveries, connected
        async with connect(url, max_size=2**20, compression=None, open_timeout=30) as conn:
            await conn.send(json.dumps({"subscribe": assets}))
            connected += 1
            while time.time() < stop:
                try:
                    raw = await asyncio.wait_for(conn.recv(), max(0.05, stop - time.time()))
                except asyncio.TimeoutError:
                    break
                received = time.time()
                if '"type":"price"' not in raw:
                    continue
                deliveries += 1
                if deliveries % 7 == 0:  # sample: parsing every message would load the client, not the server
                    msg = json.loads(raw)
                    latencies.append((received - _parse_ts(msg["data"]["timestamp"])) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)), return_exceptions=True)
    return {"clients": connected, "deliveries": deliveries, "latencies_ms": latencies}


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
        result = uvloop.run(ws(url, assets.split(","), int(clients), float(seconds)))
    elif kind == "idle":
        url, clients, hold = sys.argv[2:5]
        uvloop.run(idle(url, int(clients), Path(hold)))
        return
    else:
        raise SystemExit(f"unknown load kind {kind!r}")
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
