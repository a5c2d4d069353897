"""Where the time goes: cProfile of the hot paths, in process, written as Markdown.

Each profile drives the real code without sockets, so it shows our Python and nothing
else: the `/price` ASGI handler (auth, metering, lookup, envelope), the WebSocket fan-out of
one update to 1,000 clients (socket writes replaced by a counter), and ingest.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))


def top(profile: cProfile.Profile, lines: int = 12) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("tottime")
    stats.print_stats(lines)
    text = out.getvalue()
    body = text[text.index("ncalls") :] if "ncalls" in text else text
    return "\n".join(
        line.replace(str(Path(__file__).resolve().parents[1]) + "/", "") for line in body.splitlines() if line.strip()
    )


async def price_path(calls: int) -> str:
    from trinity_beast.domain.settings import load_settings
    from trinity_beast.domain.tick import Tick
    from trinity_beast.services.runtime import Runtime, ensure_admin_key
    from trinity_beast.transports.http.lpo import build_lpo

    rt = Runtime.create(load_settings({"BEAST_DATA_DIR": tempfile.mkdtemp(), "BEAST_FEEDS": "false"}))
    _, secret = ensure_admin_key(rt.db)
    await rt.start()
    now = time.time()
    await rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000.5"), None, None, "coinbase", now, now))
    await asyncio.sleep(0.1)
    app = build_lpo(rt)
    scope = {
        "type": "http",
        "path": "/price",
        "method": "GET",
        "query_string": b"asset=BTC",
        "headers": [(b"authorization", b"Bearer " + secret.encode())],
    }

    async def receive() -> dict:
        return {"type": "http.request"}

    async def send(message: dict) -> None:
        return None

    for _ in range(200):
        await app(scope, receive, send)
    started = time.perf_counter()
    for _ in range(calls):
        await app(scope, receive, send)
    per_call = (time.perf_counter() - started) / calls * 1e6
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        await app(scope, receive, send)
    profile.disable()
    await rt.stop()
    return f"`GET /price?asset=BTC` through the ASGI app, no sockets: **{per_call:.1f} us per request**\n\n```\n{top(profile)}\n```"


async def fan_out(updates: int) -> str:
    from trinity_beast.domain.settings import load_settings
    from trinity_beast.domain.tick import Tick
    from trinity_beast.services.runtime import Runtime, ensure_admin_key
    from trinity_beast.transports.ws.client import Client
    from trinity_beast.transports.ws.hub import Hub
    from trinity_beast.transports.ws.uvicorn_direct import DirectSocket

    class Socket:
        writes = 0

        def write(self, data: bytes) -> None:
            Socket.writes += 1

        def is_closing(self) -> bool:
            return False

    rt = Runtime.create(load_settings({"BEAST_DATA_DIR": tempfile.mkdtemp()}))
    key, _ = ensure_admin_key(rt.db)
    hub = Hub(rt)
    writable = asyncio.Event()
    writable.set()
    for _ in range(1000):
        conn = SimpleNamespace(writable=writable, transport=Socket(), close_sent=False)  # uvicorn's connection, as used
        client = Client(key, None, direct=DirectSocket(conn))
        client.assets.add("BTC")
        hub.by_asset["BTC"].add(client)

    def push(base: int) -> None:
        for i in range(updates):
            now = time.time()
            rt.live.apply(Tick("BTC", "USD", Decimal(base + i), None, None, "coinbase", now, now))

    started = time.perf_counter()
    push(60000)
    per_update = (time.perf_counter() - started) / updates * 1000  # timed without the profiler's overhead
    profile = cProfile.Profile()
    profile.enable()
    push(70000)
    profile.disable()
    return (
        f"One update fanned out to 1,000 WebSocket clients, socket writes counted instead of sent: "
        f"**{per_update:.2f} ms per update ({per_update:.2f} us of Python per client)**\n\n```\n{top(profile, 8)}\n```"
    )


def ingest() -> str:
    import ingest as bench_ingest

    profile = cProfile.Profile()
    profile.enable()
    bench_ingest.run(1000, rounds=1)
    profile.disable()
    return f"Ingest (`bench/ingest.py`), frames generated and parsed:\n\n```\n{top(profile)}\n```"


def main() -> str:
    parts = [asyncio.run(price_path(20_000)), asyncio.run(fan_out(200)), ingest()]
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(main())
