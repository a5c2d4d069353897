"""One /ws/prices subscriber: its assets and what is waiting to be sent to it.

Every client has its own queues so one slow reader never holds up the others: price updates
wait in `prices` (bounded: past MAX_PENDING only the newest per asset is kept), replies in
`control` (bounded: a client that leaves MAX_CONTROL_BACKLOG unread is closed). When nothing
is queued and the socket takes data, an update skips the queue and is written at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from trinity_beast.domain.keys import ApiKey
from trinity_beast.transports.ws.uvicorn_direct import DirectSocket

MAX_PENDING = 256  # queued updates per client before it gets only the latest price per asset
MAX_CONTROL_BACKLOG = 64  # unanswered replies (pongs, errors) before a client counts as stuck

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class Client:
    key: ApiKey
    send: Send
    assets: set[str] = field(default_factory=set)
    prices: deque[tuple[str, bytes, bytes, float]] = field(default_factory=deque)  # updates not yet sent
    control: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: tuple[int, str] | None = None
    direct: DirectSocket | None = None  # the server's connection, when updates can be written to it as ready frames
    reader: asyncio.Task[None] | None = None  # the task reading the client's frames (Hub.serve)
    last_push: dict[str, float] = field(default_factory=dict)  # asset -> monotonic time of its last update
    held: dict[str, tuple[bytes, bytes, float]] = field(default_factory=dict)  # asset -> newest update not yet due

    def __post_init__(self) -> None:
        self.key_json = orjson.dumps(self.key.id)
        self.metered_here = self.key.unlimited  # limited keys go through the writer, which checks quota

    def due(self, asset: str, now: float, interval: float) -> bool:
        """True (and the push is noted) when the last update of `asset` is `interval` old: pushes
        are coalesced to BEAST_WS_MAX_PUSHES_PER_S per asset, whatever the upstream tick rate."""
        if now - self.last_push.get(asset, -1e18) < interval:
            return False
        self.last_push[asset] = now
        return True

    def hold(self, asset: str, head: bytes, tail: bytes, published: float) -> bool:
        """Keep the newest update of `asset` until it is due; True when none was held (start a timer)."""
        first = asset not in self.held
        self.held[asset] = (head, tail, published)
        return first

    def push_now(self, frame_head: bytes, tail: bytes) -> bool:
        """Write an update straight to the socket when nothing is queued ahead of it and the
        socket is taking data; False sends it down the queue instead."""
        direct = self.direct
        if direct is None or self.prices or self.control or self.closing is not None:
            return False
        return direct.write_if_ready(frame_head, self.key_json, tail)

    def offer(self, asset: str, head: bytes, tail: bytes, published: float) -> None:
        """Queue an update; once MAX_PENDING are waiting, keep only the newest per asset."""
        if len(self.prices) >= MAX_PENDING:
            self.prices = deque(p for p in self.prices if p[0] != asset)
        self.prices.append((asset, head, tail, published))
        self.wake.set()

    def forget(self, asset: str) -> None:
        self.prices = deque(p for p in self.prices if p[0] != asset)
        self.held.pop(asset, None)

    def reply(self, message: bytes) -> None:
        if len(self.control) >= MAX_CONTROL_BACKLOG:
            self.close(1008, "too many unread replies: read what the server sends")
            return
        self.control.append(message)
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.wake.set()
