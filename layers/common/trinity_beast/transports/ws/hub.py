"""The WebSocket push feed: `/ws/prices?api_key=KEY` on the LPO port.

A client subscribes to assets and gets each change of their served price the moment it
reaches this process, coalesced to at most BEAST_WS_MAX_PUSHES_PER_S updates per asset (the
newest of a burst is sent when due), so upstream tick bursts cost a client neither CPU nor bill (the in-process book follows the cache's pub/sub, so clients of any
LPO process see every update). The hub keeps who is subscribed to what and fans each update
out: serialized once (frames.py), only the caller's key id spliced in per client, written
straight to the socket when nothing is queued ahead (uvicorn_direct.py) or queued for the
client's own writer (client.py, writer.py), which keeps a slow reader from holding up the
rest. Connections are admitted by handshake.py and limits.py; deliveries are metered by
metering.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.book import pick
from trinity_beast.domain.tick import Tick
from trinity_beast.services.prices.errors import NoPrice
from trinity_beast.transports.ws.client import Client, Receive, Send
from trinity_beast.transports.ws.frames import (
    MAX_SUBSCRIPTIONS,
    PONG,
    BadFrame,
    Messages,
    parse_frame,
    text_frame_header,
)
from trinity_beast.transports.ws.handshake import accepted_key, client_address
from trinity_beast.transports.ws.limits import ConnectionLimits
from trinity_beast.transports.ws.metering import Deliveries
from trinity_beast.transports.ws.uvicorn_direct import direct_connection
from trinity_beast.transports.ws.writer import Writer

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

log = logging.getLogger(__name__)

REVALIDATE_S = 5.0  # how often open connections re-check their key (revocation)


class Hub:
    """Who is subscribed to what, and the fan-out of each new served price."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.messages = Messages(rt.envelopes("WS"))
        self.by_asset: dict[str, set[Client]] = defaultdict(set)
        self.clients: set[Client] = set()
        self._serving = 0  # connections inside serve(), up to the end of their cleanup
        self._all_gone = asyncio.Event()  # set whenever the last of them returns (close_all waits for it)
        self.limits = ConnectionLimits()
        self.deliveries = Deliveries(rt.meter, rt.metrics)
        self.writer = Writer(self.deliveries, self.messages)
        self.revalidate_s = REVALIDATE_S
        self.push_interval_s = 1.0 / rt.settings.ws_max_pushes_per_s  # per client and asset
        self._revalidating: asyncio.Task[Any] | None = None
        rt.live.on_update(self.on_tick)

    def served(self, asset: str) -> Tick | None:
        s = self.rt.settings
        tick, _ = pick(self.rt.live.get(asset), s.exchange_priority, time.time(), s.stale_after_s)
        return tick

    # ---- fan-out -------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> None:
        clients = self.by_asset.get(tick.asset)
        if not clients or self.served(tick.asset) is not tick:
            return  # nobody listens, or this exchange's tick is not the price we serve
        head, tail = self.messages.price_parts(tick)
        now = time.perf_counter()
        mono = time.monotonic()
        interval = self.push_interval_s
        frame_heads: dict[int, bytes] = {}  # by key-id length: the frame header + the head, encoded once
        pushed: dict[str, int] = {}
        rest = tick.source == "rest"
        for client in clients:
            if rest and tick.asset in client.last_push:
                # A REST refresh (another key's max_age_ms, prewarm) only gives a first price:
                # what a subscriber receives, and pays for, follows the exchanges' feeds alone.
                continue
            if not client.due(tick.asset, mono, interval):  # coalesced: the newest goes out when due
                if client.hold(tick.asset, head, tail, now):
                    wait = client.last_push[tick.asset] + interval - mono
                    asyncio.get_running_loop().call_later(max(wait, 0.0), self._release_held, client, tick.asset)
                continue
            if client.metered_here and client.direct is not None:
                size = len(head) + len(client.key_json) + len(tail)
                frame_head = frame_heads.get(size)
                if frame_head is None:
                    frame_head = frame_heads[size] = text_frame_header(size) + head
                if client.push_now(frame_head, tail):
                    pushed[client.key.id] = pushed.get(client.key.id, 0) + 1
                    continue
            client.offer(tick.asset, head, tail, now)
        if pushed:
            self.deliveries.pushed(tick.asset, pushed, time.perf_counter() - now)

    def _release_held(self, client: Client, asset: str) -> None:
        """Send the newest update of `asset` that arrived while the client's last one was recent."""
        parts = client.held.pop(asset, None)
        if parts is None or client.closing is not None or asset not in client.assets:
            return
        head, tail, published = parts
        client.last_push[asset] = time.monotonic()
        if client.metered_here and client.direct is not None:
            size = len(head) + len(client.key_json) + len(tail)
            if client.push_now(text_frame_header(size) + head, tail):
                self.deliveries.pushed(asset, {client.key.id: 1}, time.perf_counter() - published)
                return
        client.offer(asset, head, tail, published)

    # ---- client actions ------------------------------------------------------------------
    def handle(self, client: Client, frame: str | bytes) -> None:
        """One client frame: subscribe, unsubscribe or ping; anything else is a UME error."""
        request = parse_frame(frame)
        if isinstance(request, BadFrame):
            client.reply(self.messages.reply(client.key.id, 400, None, request.error))
        elif request.action == "subscribe":
            self.subscribe(client, request.assets)
        elif request.action == "unsubscribe":
            self.unsubscribe(client, request.assets)
        else:
            client.reply(PONG)

    def subscribe(self, client: Client, assets: list[str]) -> None:
        unknown = [a for a in assets if a not in self.rt.registry and not self.rt.live.get(a)]
        if unknown:
            error = f"unknown asset(s): {', '.join(unknown)}"
            client.reply(self.messages.reply(client.key.id, 400, {"unknown": unknown}, error))
            return
        new = [a for a in assets if a not in client.assets]
        if len(client.assets) + len(new) > MAX_SUBSCRIPTIONS:
            error = f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection"
            client.reply(self.messages.reply(client.key.id, 400, {"subscribed": sorted(client.assets)}, error))
            return
        for asset in new:
            client.assets.add(asset)
            self.by_asset[asset].add(client)
        client.reply(self.messages.subscribed(client.key.id, sorted(client.assets)))
        for asset in new:  # the current price at once: a client never waits for the next tick
            tick = self.served(asset)
            if tick is not None:
                client.last_push[asset] = time.monotonic()
                client.offer(asset, *self.messages.price_parts(tick), time.perf_counter())
            else:
                self.rt.spawn(self._fetch_first(asset), f"ws-first-{asset}")

    async def _fetch_first(self, asset: str) -> None:
        try:
            await self.rt.fallback.fetch(asset)  # lands in the live book, whose listener pushes it
        except NoPrice as exc:
            log.info("no first price for %s: %s", asset, exc)

    def unsubscribe(self, client: Client, assets: list[str]) -> None:
        """Drop the assets this client had; `unsubscribed` names only those (others were never on)."""
        removed = [a for a in assets if a in client.assets]
        for asset in removed:
            client.assets.discard(asset)
            client.forget(asset)
            subscribers = self.by_asset.get(asset)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.by_asset[asset]
        client.reply(self.messages.subscribed(client.key.id, sorted(client.assets), removed))

    async def close_all(self, code: int = 1012, reason: str = "service restart", wait_s: float = 2.0) -> None:
        """Close every connection with `code` and wait (at most `wait_s`) until they are gone: a
        server that does not close WebSockets on shutdown itself (granian) calls this first."""
        self._all_gone.clear()
        for client in list(self.clients):
            client.close(code, reason)
        if self._serving:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), wait_s)

    def drop(self, client: Client) -> None:
        self.clients.discard(client)
        for asset in client.assets:
            subscribers = self.by_asset.get(asset)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.by_asset[asset]

    # ---- connection lifecycle ------------------------------------------------------------
    async def serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        key = await accepted_key(self.rt.keys, self.rt.meter, self.messages, scope, receive, send)
        if key is None:
            return
        ip = client_address(scope)
        refused = self.limits.refusal(key, ip, self.rt.settings)
        if refused is not None:
            await send({"type": "websocket.close", "code": 1008, "reason": refused})
            return

        client = Client(key, send, direct=direct_connection(send))
        self.limits.opened(key, ip)
        self.clients.add(client)
        if self._revalidating is None:
            self._revalidating = self.rt.spawn(self.revalidate(), "ws-revalidate")
        reader = client.reader = asyncio.create_task(self._read(client, receive))
        writer = asyncio.create_task(self.writer.run(client))
        self._serving += 1
        try:
            # Either side ends the connection: the peer leaves (reader) or we close it (writer).
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.drop(client)
            self.limits.closed(key, ip)
            client.close(1000, "")
            reader.cancel()
            try:
                await asyncio.gather(reader, writer, return_exceptions=True)
            finally:
                self._serving -= 1
                if not self._serving:
                    self._all_gone.set()

    async def _read(self, client: Client, receive: Receive) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind == "websocket.receive":
                text = message.get("text")
                self.handle(client, text if text is not None else message.get("bytes") or b"")

    async def revalidate(self) -> None:
        """Close connections whose key was revoked since they connected (checked every revalidate_s)."""
        while True:
            await asyncio.sleep(self.revalidate_s)
            ids = {c.key.id for c in self.clients}
            if not ids:
                continue
            try:
                current = await asyncio.to_thread(lambda ids: {i: self.rt.db.key_by_id(i) for i in ids}, ids)
            except Exception:
                log.warning("could not re-check WebSocket keys; will retry")
                continue
            for client in list(self.clients):
                key = current.get(client.key.id)
                if key is None or not key.active:
                    client.close(1008, "API key revoked")

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "deliveries": self.deliveries.count,
            "dropped_slow": self.writer.dropped_slow,
            "refused_limit": self.limits.refused,
        }
