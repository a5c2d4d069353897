"""The WebSocket push feed: `/ws/prices?api_key=KEY` on the LPO port.

A client subscribes to assets and gets every change of their served price the moment it
reaches this process (the in-process book follows the cache's pub/sub, so clients of any
LPO process see every update). Each update is serialized once; only the caller's key id is
spliced in per client. Every client has its own writer: a client gets every update in order; one that falls MAX_PENDING updates behind gets the newest
price of each asset instead of a growing queue, and one that stops reading for
SLOW_CLIENT_S is dropped with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs

import orjson

from trinity_beast.domain.book import pick
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.envelope import utc_iso
from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.text import asset_symbol
from trinity_beast.domain.tick import Tick
from trinity_beast.services.prices.errors import NoPrice
from trinity_beast.services.auth import authenticate, credentials, quota_for

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

log = logging.getLogger(__name__)

ENDPOINT = "/ws/prices"
MAX_SUBSCRIPTIONS = 50  # assets per connection
MAX_FRAME_BYTES = 64 * 1024  # larger client frames close the connection with 1009 (server setting)
SLOW_CLIENT_S = 10.0  # a client that accepts nothing for this long is dropped
MAX_PENDING = 256  # queued updates per client before it gets only the latest price per asset
MAX_CONTROL_BACKLOG = 64  # unanswered replies (pongs, errors) before a client counts as stuck
REVALIDATE_S = 5.0  # how often open connections re-check their key (revocation)
_KEY_SLOT = "\x00key\x00"

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def text_frame_header(length: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame (server to client) of `length` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def direct_connection(send: Send) -> Any:
    """uvicorn's sans-io WebSocket connection behind `send`, if that is what serves us.

    Writing a ready frame to its transport skips the per-client ASGI send and frame encoding
    (the cost of a push to a thousand clients); its `writable` flag is uvicorn's own
    backpressure signal. Anything else (another server, another implementation) gets None and
    the portable ASGI path.
    """
    conn = getattr(send, "__self__", None)
    if (
        isinstance(getattr(conn, "writable", None), asyncio.Event)
        and hasattr(conn, "transport")
        and hasattr(conn, "close_sent")
    ):
        return conn
    return None


@dataclass(eq=False)
class Client:
    key: ApiKey
    send: Send
    assets: set[str] = field(default_factory=set)
    prices: deque[tuple[str, bytes, bytes, float]] = field(default_factory=deque)  # updates not yet sent
    control: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: tuple[int, str] | None = None
    direct: Any = None  # the server's connection, when updates can be written to it as ready frames

    def __post_init__(self) -> None:
        self.key_json = orjson.dumps(self.key.id)
        self.metered_here = self.key.unlimited  # limited keys go through the writer, which checks quota

    def push_now(self, frame_head: bytes, tail: bytes) -> bool:
        """Write an update straight to the socket when nothing is queued ahead of it and the
        socket is taking data; False sends it down the queue instead."""
        conn = self.direct
        if (
            conn is None
            or self.prices
            or self.control
            or self.closing is not None
            or conn.close_sent
            or not conn.writable.is_set()
            or conn.transport.is_closing()
        ):
            return False
        conn.transport.write(b"".join((frame_head, self.key_json, tail)))
        return True

    def offer(self, asset: str, head: bytes, tail: bytes, published: float) -> None:
        """Queue an update; once MAX_PENDING are waiting, keep only the newest per asset."""
        if len(self.prices) >= MAX_PENDING:
            self.prices = deque(p for p in self.prices if p[0] != asset)
        self.prices.append((asset, head, tail, published))
        self.wake.set()

    def forget(self, asset: str) -> None:
        self.prices = deque(p for p in self.prices if p[0] != asset)

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


class Hub:
    """Who is subscribed to what, and the fan-out of each new served price."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.envelopes = rt.envelopes("WS")
        self.by_asset: dict[str, set[Client]] = defaultdict(set)
        self.clients: set[Client] = set()
        self.deliveries = 0
        self.dropped_slow = 0
        self.refused_limit = 0  # connections refused by the per-key or per-address limit
        self.per_key: Counter[str] = Counter()  # open connections per key id
        self.per_ip: Counter[str] = Counter()  # open connections per client address (non-partner keys)
        self.slow_client_s = SLOW_CLIENT_S
        self.revalidate_s = REVALIDATE_S
        self._revalidating: asyncio.Task | None = None
        rt.live.on_update(self.on_tick)

    # ---- messages ----------------------------------------------------------------------
    def message(self, client: Client, status: int, data: Any = None, error: str | None = None) -> bytes:
        return orjson.dumps(self.envelopes.build(ENDPOINT, status, data=data, error=error, api_key_id=client.key.id))

    def price_parts(self, tick: Tick) -> tuple[bytes, bytes]:
        """The update serialized once, split around the caller's key id."""
        data = {
            "type": "price",
            "asset": tick.asset,
            "price": float(tick.price),
            "source": tick.label,
            "timestamp": utc_iso(tick.exchange_ts),
        }
        if tick.usd_rate is not None:
            data["converted_from"] = {"quote": tick.quote, "usd_rate": float(tick.usd_rate)}
        raw = orjson.dumps(self.envelopes.build(ENDPOINT, 200, data=data, api_key_id=_KEY_SLOT))
        head, _, tail = raw.partition(orjson.dumps(_KEY_SLOT))
        return head, tail

    def served(self, asset: str) -> Tick | None:
        s = self.rt.settings
        tick, _ = pick(self.rt.live.get(asset), s.exchange_priority, time.time(), s.stale_after_s)
        return tick

    def on_tick(self, tick: Tick) -> None:
        clients = self.by_asset.get(tick.asset)
        if not clients or self.served(tick.asset) is not tick:
            return  # nobody listens, or this exchange's tick is not the price we serve
        head, tail = self.price_parts(tick)
        now = time.perf_counter()
        frame_heads: dict[int, bytes] = {}  # by key-id length: the frame header + the head, encoded once
        pushed: dict[str, int] = {}
        for client in clients:
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
            latency = time.perf_counter() - now
            for key_id, count in pushed.items():
                self.rt.meter.record(key_id, ENDPOINT, tick.asset, "ws", 200, latency, True, count=count)
            delivered = sum(pushed.values())
            self.deliveries += delivered
            self.rt.metrics.observe("WS", ENDPOINT, "ws", 200, latency, count=delivered)

    # ---- client actions ----------------------------------------------------------------
    def subscribe(self, client: Client, raw: Any) -> None:
        assets = self._asset_list(client, raw, "subscribe")
        if assets is None:
            return
        unknown = [a for a in assets if a not in self.rt.registry and not self.rt.live.get(a)]
        if unknown:
            client.reply(self.message(client, 400, {"unknown": unknown}, f"unknown asset(s): {', '.join(unknown)}"))
            return
        new = [a for a in assets if a not in client.assets]
        if len(client.assets) + len(new) > MAX_SUBSCRIPTIONS:
            error = f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection"
            client.reply(self.message(client, 400, {"subscribed": sorted(client.assets)}, error))
            return
        for asset in new:
            client.assets.add(asset)
            self.by_asset[asset].add(client)
        client.reply(self.message(client, 200, {"type": "subscribed", "assets": sorted(client.assets)}))
        for asset in new:  # the current price at once: a client never waits for the next tick
            tick = self.served(asset)
            if tick is not None:
                client.offer(asset, *self.price_parts(tick), time.perf_counter())
            else:
                self.rt.spawn(self._fetch_first(asset), f"ws-first-{asset}")

    async def _fetch_first(self, asset: str) -> None:
        try:
            await self.rt.fallback.fetch(asset)  # lands in the live book, whose listener pushes it
        except NoPrice as exc:
            log.info("no first price for %s: %s", asset, exc)

    def unsubscribe(self, client: Client, raw: Any) -> None:
        assets = self._asset_list(client, raw, "unsubscribe")
        if assets is None:
            return
        for asset in assets:
            client.assets.discard(asset)
            client.forget(asset)
            self.by_asset.get(asset, set()).discard(client)
        data = {"type": "subscribed", "assets": sorted(client.assets), "unsubscribed": assets}
        client.reply(self.message(client, 200, data))

    def _asset_list(self, client: Client, raw: Any, action: str) -> list[str] | None:
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
            client.reply(self.message(client, 400, None, f'{action}: expected a list of assets, e.g. {{"{action}": ["BTC", "ETH"]}}'))
            return None
        if len(raw) > MAX_SUBSCRIPTIONS:
            client.reply(self.message(client, 400, None, f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection"))
            return None
        assets: list[str] = []
        for item in raw:
            asset = asset_symbol(item)
            if asset is None:
                client.reply(self.message(client, 400, None, f"malformed asset {item[:20]!r}: an asset is 1-15 letters or digits"))
                return None
            if asset not in assets:
                assets.append(asset)
        return assets

    def handle(self, client: Client, frame: str | bytes) -> None:
        """One client frame: subscribe, unsubscribe or ping; anything else is a UME error."""
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            client.reply(self.message(client, 400, None, f"malformed JSON: {str(exc).split(':')[0]}"))
            return
        if not isinstance(msg, dict):
            client.reply(self.message(client, 400, None, "expected a JSON object such as {\"subscribe\": [\"BTC\"]}"))
            return
        if "subscribe" in msg:
            self.subscribe(client, msg["subscribe"])
        elif "unsubscribe" in msg:
            self.unsubscribe(client, msg["unsubscribe"])
        elif "ping" in msg:
            client.reply(b'{"type":"pong"}')
        else:
            shown = ", ".join(list(msg)[:3])[:60] or "none"
            client.reply(
                self.message(client, 400, None, f"unknown action ({shown}): expected subscribe, unsubscribe or ping")
            )

    def over_limit(self, key: ApiKey, ip: str) -> str | None:
        """Why one more connection for this key from this address is refused, or None.

        Partner keys are exempt: they are never throttled, and many partners may reach us
        through one PrivateLink address."""
        if key.tier == "partner":
            return None
        s = self.rt.settings
        if s.ws_max_per_key and self.per_key[key.id] >= s.ws_max_per_key:
            return f"too many connections for this key: at most {s.ws_max_per_key} open at once"
        if s.ws_max_per_ip and self.per_ip[ip] >= s.ws_max_per_ip:
            return f"too many connections from {ip}: at most {s.ws_max_per_ip} open at once"
        return None

    def drop(self, client: Client) -> None:
        self.clients.discard(client)
        for asset in client.assets:
            subscribers = self.by_asset.get(asset)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.by_asset[asset]

    # ---- connection lifecycle --------------------------------------------------------
    async def serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        secret = credentials(scope.get("headers", []), (query.get("api_key") or [None])[0])
        try:
            key, problem = await authenticate(self.rt.keys, secret, "ws")
        except DatabaseUnavailable:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1013, "reason": "key database unreachable: retry shortly"})
            return
        await send({"type": "websocket.accept"})
        if problem is not None or key is None:
            await send({"type": "websocket.close", "code": 1008, "reason": problem or "invalid API key"})
            return
        quota = await quota_for(self.rt.meter, key)
        if quota.exhausted:
            reason = f"monthly limit of {quota.limit} requests reached; resets at {utc_iso(quota.reset_at)}"
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return

        ip = str((scope.get("client") or ("unknown",))[0])
        refused = self.over_limit(key, ip)
        if refused is not None:
            self.refused_limit += 1
            await send({"type": "websocket.close", "code": 1008, "reason": refused})
            return
        limited_ip = None if key.tier == "partner" else ip

        client = Client(key, send, direct=direct_connection(send))
        self.per_key[key.id] += 1
        if limited_ip is not None:
            self.per_ip[limited_ip] += 1
        self.clients.add(client)
        if self._revalidating is None:
            self._revalidating = self.rt.spawn(self.revalidate(), "ws-revalidate")
        reader = asyncio.create_task(self._read(client, receive))
        writer = asyncio.create_task(self._write(client))
        try:
            # Either side ends the connection: the peer leaves (reader) or we close it (writer).
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.drop(client)
            _release(self.per_key, key.id)
            if limited_ip is not None:
                _release(self.per_ip, limited_ip)
            client.close(1000, "")
            reader.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

    async def _read(self, client: Client, receive: Receive) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind == "websocket.receive":
                text = message.get("text")
                self.handle(client, text if text is not None else message.get("bytes") or b"")

    async def _write(self, client: Client) -> None:
        meter = self.rt.meter
        limit = 0 if client.key.unlimited else client.key.monthly_limit
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.control or client.prices:
                    if client.closing is not None:
                        break
                    if client.control:
                        await asyncio.wait_for(self._send(client, client.control.popleft()), self.slow_client_s)
                        continue
                    asset, head, tail, published = client.prices.popleft()
                    if limit and meter.quota(client.key.id, limit).exhausted:
                        quota = meter.quota(client.key.id, limit)
                        error = f"monthly limit of {limit} requests reached; the limit resets at {utc_iso(quota.reset_at)}"
                        await self._send(client, self.message(client, 429, None, error))
                        client.close(1008, "monthly limit reached")
                        break
                    await asyncio.wait_for(self._send(client, head + client.key_json + tail), self.slow_client_s)
                    self.deliveries += 1
                    latency = time.perf_counter() - published
                    meter.record(client.key.id, ENDPOINT, asset, "ws", 200, latency, True)
                    self.rt.metrics.observe("WS", ENDPOINT, "ws", 200, latency)
                if client.closing is not None:
                    code, reason = client.closing
                    await asyncio.wait_for(client.send({"type": "websocket.close", "code": code, "reason": reason}), 1)
                    return
        except asyncio.TimeoutError:
            self.dropped_slow += 1
            log.info("dropping slow WebSocket client %s", client.key.id)
            client.closing = (1008, f"too slow: nothing read for {self.slow_client_s:g} s")
            try:
                await asyncio.wait_for(
                    client.send({"type": "websocket.close", "code": 1008, "reason": client.closing[1]}), 1
                )
            except Exception:
                pass
        except Exception:  # the peer went away mid-send
            client.closing = client.closing or (1006, "")

    @staticmethod
    async def _send(client: Client, payload: bytes) -> None:
        await client.send({"type": "websocket.send", "text": payload.decode()})

    async def revalidate(self) -> None:
        """Close connections whose key was revoked since they connected (checked every revalidate_s)."""
        while True:
            await asyncio.sleep(self.revalidate_s)
            ids = {c.key.id for c in self.clients}
            if not ids:
                continue
            try:
                current = await asyncio.to_thread(lambda: {i: self.rt.db.key_by_id(i) for i in ids})
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
            "deliveries": self.deliveries,
            "dropped_slow": self.dropped_slow,
            "refused_limit": self.refused_limit,
        }


def _release(counts: Counter[str], name: str) -> None:
    counts[name] -= 1
    if counts[name] <= 0:
        del counts[name]
