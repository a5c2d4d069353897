"""Wiring: the long-lived objects of one process, built once from settings.

Servers, jobs and handlers take a Runtime instead of reaching for globals, so tests build
one over real Redis/PostgreSQL (or memory/SQLite) and drive it the way production does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.assets import AssetRegistry, load_registry
from trinity_beast.domain.envelope import Envelopes
from trinity_beast.domain.keys import ApiKey, new_key
from trinity_beast.domain.settings import Settings
from trinity_beast.services.auth import KeyRing
from trinity_beast.services.meter import Meter
from trinity_beast.services.metrics import Metrics
from trinity_beast.services.prices.answer import PriceDesk
from trinity_beast.services.prices.live import LivePrices
from trinity_beast.services.reports.policy import ReportLimits, ReportReader, cursor_key
from trinity_beast.stores.cache import Cache, MemoryCache, make_cache
from trinity_beast.stores.db import Database, make_database

if TYPE_CHECKING:
    import httpx

    from trinity_beast.services.prices.fallback import RestFallback
    from trinity_beast.services.prices.rest import RestPrices

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: Cache
    keys: KeyRing
    meter: Meter
    live: LivePrices
    started_at: float = field(default_factory=time.time)
    metrics: Metrics = field(default_factory=Metrics)  # GET /metrics (ops.py)
    feeds: Any = None  # FeedManager, when this process runs the exchange feeds
    reports: ReportReader | None = None  # reports' own database handle and limits (set by create)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _envelopes: dict[tuple[str, str | None], Envelopes] = field(default_factory=dict)

    @functools.cached_property
    def registry(self) -> AssetRegistry:
        return load_registry()

    @functools.cached_property
    def http(self) -> httpx.AsyncClient:
        """One pooled client for every exchange REST call this process makes."""
        import httpx  # only processes that call exchanges pay for importing it

        client = httpx.AsyncClient(headers={"User-Agent": "trinity-beast/0.1"}, follow_redirects=False)
        self.on_stop(client.aclose)
        return client

    @functools.cached_property
    def prices(self) -> PriceDesk:
        return PriceDesk(self.settings, self.keys, self.meter, self.live, lambda: self.fallback)

    @functools.cached_property
    def rest(self) -> RestPrices:
        """REST tickers to served prices (the fallback and prewarm); imports httpx, so only when used."""
        from trinity_beast.services.prices.rest import RestPrices

        return RestPrices(self.settings, self.registry, self.live, self.cache, lambda: self.http)

    @functools.cached_property
    def fallback(self) -> RestFallback:
        from trinity_beast.services.prices.fallback import RestFallback

        return RestFallback(self.rest)

    @classmethod
    def create(cls, settings: Settings, db: Database | None = None, cache: Cache | None = None) -> Runtime:
        """Open the stores named by `settings` (or use the given ones) and apply migrations."""
        db = db if db is not None else make_database(settings)
        db.migrate()
        cache = cache if cache is not None else make_cache(settings)
        reports = ReportReader(db, ReportLimits.from_settings(settings), cursor_key(settings, db))
        return cls(
            settings=settings,
            db=db,
            cache=cache,
            keys=KeyRing(db, ttl=settings.key_cache_s),
            meter=Meter(
                cache, seed=lambda key, since, until: asyncio.to_thread(db.billable_requests, key, since, until)
            ),
            live=LivePrices(cache),
            reports=reports,
        )

    @property
    def report_reader(self) -> ReportReader:
        assert self.reports is not None, "Runtime.create sets the report reader"
        return self.reports

    def envelopes(self, service: str, profile: str | None = None) -> Envelopes:
        """The envelopes of a service tag, with its own agent profile kind or `profile`."""
        if (service, profile) not in self._envelopes:
            self._envelopes[service, profile] = Envelopes.for_service(self.settings, service, profile)
        return self._envelopes[service, profile]

    def health(self) -> dict[str, Any]:
        return {
            "cache": "redis" if self.settings.redis_url else "memory",
            "cache_connected": self.live.connected.is_set(),
            "database": self.db.dialect,
            "assets_held": len(self.live.assets()),
            "feeds": None if self.feeds is None else self.feeds.health(),
        }

    def on_stop(self, stopper: Callable[[], Awaitable[None]]) -> None:
        """Run `stopper` when the runtime stops, before usage is flushed and the stores close."""
        self._stoppers.append(stopper)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def start(self) -> None:
        """Start the background work every LPO process needs: price following, usage flushing."""
        self.spawn(self.live.run(), "live-prices")
        self.spawn(self.meter.run(self.settings.usage_flush_s), "usage-flush")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.live.connected.wait(), timeout=5)

    async def stop(self) -> None:
        """Cancel background work, flush usage (nothing counted is lost), close the stores."""
        for stopper in reversed(self._stoppers):
            try:
                await stopper()
            except Exception:
                log.exception("stopping %s failed", stopper)
        self._stoppers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.meter.flush()
        if isinstance(self.cache, MemoryCache):
            # The embedded cache dies with this process: move every bucket, open minutes too,
            # into the database now, so nothing counted is lost across a restart.
            from trinity_beast.services.sync import sync_once

            await sync_once(self.cache, self.db, now=time.time() + 120)
        await self.cache.close()
        if self.reports is not None:
            self.reports.close()
        self.db.close()


def ensure_admin_key(db: Database, keep: Callable[[ApiKey, str], None] | None = None) -> tuple[ApiKey, str] | None:
    """On a first start with no keys, create an admin key so a new user can call the API at once.

    `keep` stores the key somewhere first (app/first_admin.py: Secrets Manager); if it raises, no key is
    made. Processes starting together make one key between them (Database.insert_first_key).
    """
    if db.count_keys():
        return None
    key, secret = new_key("first admin", "admin")
    if not db.insert_first_key(key, None if keep is None else lambda: keep(key, secret)):
        return None
    return key, secret
