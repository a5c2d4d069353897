"""One simulated WebSocket connection: read client frames, push updates and heartbeats, misbehave.

Apart from the server's lifecycle so the per-connection loop (and what each mode does to it)
reads in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from beast_sim.exchanges import PROTOCOLS
from beast_sim.protocol import SimProtocol
from beast_sim.state import SimSession, SimState
from beast_sim.wire import CLOCK_SKEW

log = logging.getLogger("beast_sim")

FLOOD_COPIES = 20  # flood mode: every subscribed symbol's update this many times per push
GARBAGE: list[str | bytes] = [
    "{not json",
    "[]",
    '{"unexpected": true}',
    "null",
    '"just a string"',
    b"\xff\xfe\x00binary",
]


async def serve_connection(sim: SimState, exchange: str, ws: WebSocket) -> None:
    """Speak `exchange`'s protocol on `ws` until the client leaves or the simulator closes it."""
    if sim.mode(exchange) == "down":
        await ws.close(code=1013)  # before accept: the handshake is refused (HTTP 403)
        return
    await ws.accept()
    proto = PROTOCOLS[exchange]
    s = SimSession(exchange, sim)
    sim.connections[exchange] += 1
    sim.sessions[exchange].add(s)
    lock = asyncio.Lock()

    async def send(frames: list[str | bytes]) -> None:
        async with lock:
            for frame in frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_text(frame)

    reader = asyncio.create_task(_read(sim, ws, proto, s, send))
    closed_by_us = False
    try:
        await send(list(proto.on_connect(s)))
        closed_by_us = await _push(sim, exchange, proto, s, send, reader)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        sim.sessions[exchange].discard(s)
        if closed_by_us:
            sim.disconnects[exchange] += 1
            with contextlib.suppress(Exception):
                await ws.close(code=1001)


async def _push(
    sim: SimState, exchange: str, proto: SimProtocol, s: SimSession, send: Any, reader: asyncio.Task[None]
) -> bool:
    """Periodic updates and heartbeats; True when the simulator decided to close."""
    hb_every = sim.heartbeat_s.get(exchange, proto.heartbeat_s)
    next_hb = time.monotonic() + hb_every if hb_every else math.inf
    deadline = sim.subscribe_deadline_s.get(exchange, proto.subscribe_deadline_s)
    while True:
        flooding = sim.mode(exchange) == "flood" and s.subscribed
        await asyncio.wait({reader}, timeout=0 if flooding else sim.push_interval_s)
        if reader.done():
            return False
        now = time.monotonic()
        mode = sim.mode(exchange)
        CLOCK_SKEW.set(sim.skew[exchange])
        if s.kill or (mode == "drop" and now - s.opened >= sim.drop_after_s):
            return True
        if mode == "silent":
            continue
        if deadline and not s.subscribed and now - s.opened > deadline:
            return True
        if s.pending_heartbeat is not None and now > s.pending_heartbeat[1]:
            sim.heartbeat_disconnects[exchange] += 1
            return True
        frames: list[str | bytes] = []
        if hb_every and now >= next_hb:
            frames += proto.heartbeat(s)
            next_hb = now + hb_every
        if s.subscribed:
            symbols = list(s.subscribed)
            chosen = sim.rng.sample(symbols, min(sim.updates_per_push, len(symbols)))
            frames += proto.updates(s, chosen)
            if mode == "flood":
                frames += proto.updates(s, symbols) * FLOOD_COPIES
            if mode == "garbage":
                frames += GARBAGE
                frames.append(proto.bad_ticker(s, chosen[0]))
        if frames:
            await send(frames)


async def _read(sim: SimState, ws: WebSocket, proto: SimProtocol, s: SimSession, send: Any) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            raw = message.get("bytes") or b""
            text = raw.decode("utf-8", "replace")
        if sim.mode(s.exchange) == "silent":
            continue
        CLOCK_SKEW.set(sim.skew[s.exchange])
        try:
            frames = proto.on_text(s, text)
        except Exception:  # a bad client frame must not break the simulator
            log.exception("simulator %s: failed to handle %r", s.exchange, text[:200])
            continue
        if frames:
            await send(frames)
