"""Feed manager: keeps one supervised WebSocket connection per exchange alive, forever.

Connectors only parse; this module does the I/O: connect, subscribe, keep-alive, answer
heartbeats, a no-message watchdog, and reconnect with jittered, capped exponential
backoff. Nothing an exchange sends (garbage, error frames, unknown symbols) and nothing
the tick callback raises may stop a feed; all of it is logged (rate-limited) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import EXCHANGES, Settings
from trinity_beast.domain.tick import Tick
from trinity_beast.exchanges import CONNECTORS, ws_url
from trinity_beast.exchanges.base import ACK, ERROR, HEARTBEAT, UNKNOWN, UNKNOWN_SYMBOL, Connector, Event, preview

log = logging.getLogger("trinity_beast.exchanges.feeds")

_LOG_BURST = 5  # log at most this many problems per connection per window ...
_LOG_WINDOW_S = 60.0  # ... then only count them


class _Silent(Exception):
    """No message within the watchdog period."""


@dataclass(slots=True)
class _Link:
    """One WebSocket connection of an exchange feed and its counters."""

    exchange: str
    index: int
    symbols: dict[str, tuple[str, str]]  # exchange symbol -> (asset, quote)
    state: str = "idle"
    connected_at: float | None = None
    last_message: float | None = None  # monotonic
    reconnects: int = 0
    errors: int = 0
    ticks: int = 0
    messages: int = 0
    watchdog_timeouts: int = 0
    session_ticks: int = 0  # ticks since the current connection opened
    last_error: str | None = None
    by_asset: dict[str, str] = field(default_factory=dict)  # asset -> exchange symbol
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    _log_window: float = 0.0
    _log_count: int = 0


@dataclass(slots=True)
class _Feed:
    name: str
    connector: Connector
    url: str
    links: list[_Link] = field(default_factory=list)
    unknown_symbols: set[str] = field(default_factory=set)


class FeedManager:
    """Live prices from the exchanges' push feeds into `on_tick`.

    `exchanges` limits which exchanges run (default: all six) and `assets` which assets
    are subscribed (default: the whole registry). The timing knobs exist so tests can run
    the real reconnect logic in seconds.
    """

    def __init__(
        self,
        settings: Settings,
        registry: AssetRegistry,
        on_tick: Callable[[Tick], None],
        exchanges: Iterable[str] | None = None,
        *,
        assets: Iterable[str] | None = None,
        watchdog_s: float = 40.0,  # > Crypto.com's ~30 s heartbeat, the slowest keep-alive we rely on
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        open_timeout_s: float = 10.0,
        max_size: int = 2**22,
        connect_delay_s: float | None = None,
        max_per_connection: Mapping[str, int] | None = None,
        keepalive_s: Mapping[str, float] | None = None,
        on_event: Callable[[str, Event], None] | None = None,
    ) -> None:
        names = list(EXCHANGES if exchanges is None else exchanges)
        unknown = [n for n in names if n not in CONNECTORS]
        if unknown:
            raise ValueError(f"unknown exchange(s): {', '.join(unknown)}")
        self.settings = settings
        self.registry = registry
        self.on_tick = on_tick
        self.on_event = on_event
        self.watchdog_s = watchdog_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.open_timeout_s = open_timeout_s
        self.max_size = max_size
        self.connect_delay_s = connect_delay_s
        self.keepalive_s = dict(keepalive_s or {})
        wanted = None if assets is None else set(assets)
        self._feeds: dict[str, _Feed] = {}
        for name in names:
            connector = CONNECTORS[name]
            insts = [i for i in registry.instruments_for(name) if wanted is None or i.asset in wanted]
            feed = _Feed(name, connector, ws_url(settings, name))
            limit = (max_per_connection or {}).get(name) or connector.max_per_connection or max(len(insts), 1)
            for n, start in enumerate(range(0, len(insts), limit)):
                chunk = insts[start : start + limit]
                feed.links.append(
                    _Link(
                        name,
                        n,
                        {i.symbol: (i.asset, i.quote) for i in chunk},
                        by_asset={i.asset: i.symbol for i in chunk},
                    )
                )
            self._feeds[name] = feed
        self._stopping = False

    # ---- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Start every connection in the background; returns at once."""
        self._stopping = False
        for feed in self._feeds.values():
            for link in feed.links:
                if link.task is None or link.task.done():
                    link.task = asyncio.create_task(self._run(feed, link), name=f"feed-{feed.name}-{link.index}")

    async def stop(self) -> None:
        """Close every connection and wait for the tasks to end."""
        self._stopping = True
        tasks = [link.task for feed in self._feeds.values() for link in feed.links if link.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for feed in self._feeds.values():
            for link in feed.links:
                link.task = None
                link.ws = None
                link.state = "stopped"

    async def __aenter__(self) -> FeedManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- reporting -----------------------------------------------------------------
    def health(self) -> dict[str, dict[str, Any]]:
        """Per exchange: state, age of the last message, and the counters."""
        now = time.monotonic()
        report: dict[str, dict[str, Any]] = {}
        for feed in self._feeds.values():
            links = feed.links
            states = {link.state for link in links}
            if not links:
                state = "idle"
            elif states == {"connected"}:
                state = "connected"
            elif "connected" in states:
                state = "degraded"
            else:
                state = links[0].state
            lasts = [link.last_message for link in links if link.last_message is not None]
            report[feed.name] = {
                "state": state,
                "last_message_age_s": None if not lasts else round(now - max(lasts), 3),
                "reconnects": sum(link.reconnects for link in links),
                "errors": sum(link.errors for link in links),
                "ticks": sum(link.ticks for link in links),
                "messages": sum(link.messages for link in links),
                "watchdog_timeouts": sum(link.watchdog_timeouts for link in links),
                "connections": len(links),
                "symbols": sum(len(link.symbols) for link in links),
                "unknown_symbols": sorted(feed.unknown_symbols),
                "last_error": next((link.last_error for link in links if link.last_error), None),
            }
        return report

    # ---- the connection loop ---------------------------------------------------------
    async def _run(self, feed: _Feed, link: _Link) -> None:
        attempt = 0
        while not self._stopping:
            link.state = "connecting"
            link.session_ticks = 0
            try:
                async with connect(
                    feed.url,
                    open_timeout=self.open_timeout_s,
                    max_size=self.max_size,
                    close_timeout=1.0,
                    ping_interval=20.0,
                    ping_timeout=20.0,
                    proxy=None,
                ) as ws:
                    link.ws = ws
                    link.state = "connected"
                    link.connected_at = time.monotonic()
                    await self._session(feed, link, ws)
            except asyncio.CancelledError:
                raise
            except _Silent:
                link.watchdog_timeouts += 1
                self._problem(link, f"no message for {self.watchdog_s:g} s; reconnecting")
            except Exception as exc:  # connection refused, closed, protocol error, ...
                self._problem(link, f"connection lost: {type(exc).__name__}: {exc}")
            finally:
                link.ws = None
            if self._stopping:
                break
            # A connection that delivered prices resets the backoff.
            if link.session_ticks or (link.connected_at and time.monotonic() - link.connected_at > self.backoff_max_s):
                attempt = 0
            delay = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt)) * random.uniform(0.5, 1.0)
            attempt = min(attempt + 1, 30)
            link.state = "backoff"
            link.reconnects += 1
            link.connected_at = None
            await asyncio.sleep(delay)
        link.state = "stopped"

    async def _session(self, feed: _Feed, link: _Link, ws: ClientConnection) -> None:
        """Subscribe and pump messages until the connection fails (it always ends by raising)."""
        connector = feed.connector
        state = connector.new_state(link.symbols)
        subscribed = list(link.symbols)
        delay = connector.connect_delay if self.connect_delay_s is None else self.connect_delay_s
        keepalive: asyncio.Task[None] | None = None
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            for message in connector.subscribe_messages(subscribed):
                await ws.send(message)
            interval = self.keepalive_s.get(feed.name, connector.keepalive_interval)
            if interval:
                keepalive = asyncio.create_task(self._keepalive(connector, ws, interval))
            while True:
                try:
                    async with asyncio.timeout(self.watchdog_s):
                        raw = await ws.recv()
                except TimeoutError:
                    raise _Silent() from None
                link.last_message = time.monotonic()
                link.messages += 1
                parsed = connector.parse(raw, time.time(), state)
                for reply in parsed.replies:
                    await ws.send(reply)
                for tick in parsed.ticks:
                    link.ticks += 1
                    link.session_ticks += 1
                    if feed.unknown_symbols:  # a rejected symbol that now prices is no longer unknown
                        feed.unknown_symbols.discard(link.by_asset.get(tick.asset, ""))
                    try:
                        self.on_tick(tick)
                    except Exception as exc:
                        self._problem(link, f"tick callback failed: {type(exc).__name__}: {exc}")
                for event in parsed.events:
                    resend = self._event(feed, link, event, subscribed)
                    if resend and subscribed:
                        for message in connector.subscribe_messages(subscribed):
                            await ws.send(message)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await keepalive

    async def _keepalive(self, connector: Connector, ws: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            message = connector.keepalive_message()
            if message is not None:
                await ws.send(message)

    def _event(self, feed: _Feed, link: _Link, event: Event, subscribed: list[str]) -> bool:
        """Count and log one event; True when the subscription should be resent."""
        if self.on_event is not None:
            try:
                self.on_event(feed.name, event)
            except Exception:
                log.exception("%s: on_event callback failed", feed.name)
        if event.kind in (ACK, HEARTBEAT) or event.kind == "info":
            return False
        if event.kind == UNKNOWN_SYMBOL and event.symbol:
            feed.unknown_symbols.add(event.symbol)
            self._problem(link, f"symbol rejected: {event.symbol}: {event.text}")
            if event.symbol in subscribed and feed.connector.resubscribe_on_reject:
                subscribed.remove(event.symbol)
                return True
            return False
        if event.kind in (ERROR, UNKNOWN):
            self._problem(link, event.text)
        return False

    def _problem(self, link: _Link, text: str) -> None:
        link.errors += 1
        link.last_error = text
        now = time.monotonic()
        if now - link._log_window > _LOG_WINDOW_S:
            if link._log_count > _LOG_BURST:
                log.warning("%s: %d more problems not logged", link.exchange, link._log_count - _LOG_BURST)
            link._log_window, link._log_count = now, 0
        link._log_count += 1
        if link._log_count <= _LOG_BURST:
            log.warning("%s[%d]: %s", link.exchange, link.index, preview(text, 300))
