"""Operations endpoints on the LPO and LRS: GET /ready, GET /metrics, and request timing.

/health says the process is alive; /ready says it is worth sending traffic to: on the LPO a
reachable cache and at least one fresh price feed, on the LRS a reachable cache and database.
A load balancer that routes by /ready stops sending requests to a task that would only
answer stale prices or errors.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.services import sync
from trinity_beast.services.metrics import CONTENT_TYPE, Metrics, Sample, resident_memory_bytes, sample

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings
    from trinity_beast.services.runtime import Runtime

PROBE_TIMEOUT_S = 1.0
_UP_STATES = ("connected", "degraded")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class Instrument:
    """ASGI middleware: count and time every HTTP request per endpoint and status.

    Paths outside `known` are counted as `other`, so random paths cannot create new series.
    """

    def __init__(self, app: Any, metrics: Metrics, service: str, known: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.service = service
        self._known_fn = known
        self._known: frozenset[str] | None = None

    def endpoint(self, path: str) -> str:
        if self._known is None:
            self._known = frozenset(self._known_fn())
        return path if path in self._known else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.observe(
                self.service, self.endpoint(scope["path"]), "http", status, time.perf_counter() - started
            )


def metrics_allowed(settings: Settings, client: str, authorization: list[str]) -> bool:
    """Who may read /metrics: loopback, an address in BEAST_METRICS_NETWORKS, or a request
    carrying `Authorization: Bearer BEAST_METRICS_TOKEN` (compared in constant time).
    `client` is the peer, or behind BEAST_TRUSTED_PROXIES the client they forwarded."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        address = None
    if address is not None and (
        address.is_loopback or any(address in ipaddress.ip_network(n) for n in settings.metrics_networks)
    ):
        return True
    token = settings.metrics_token
    if token and len(authorization) == 1:
        scheme, _, given = authorization[0].strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return False


def route_paths(api: FastAPI) -> list[str]:
    return [path for route in api.routes if isinstance(path := getattr(route, "path", None), str)]


# ---- readiness ------------------------------------------------------------------------------


async def _within(awaitable: Awaitable[Any], timeout: float = PROBE_TIMEOUT_S) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except Exception:  # unreachable, timed out or broken: all mean "not up"
        return None


def newest_price_age(rt: Runtime, now: float) -> float | None:
    """Seconds since this process last received any price (from its feeds or via the cache)."""
    newest = None
    for asset in rt.live.assets():
        for tick in rt.live.get(asset).values():
            if newest is None or tick.received_ts > newest:
                newest = tick.received_ts
    return None if newest is None else max(0.0, now - newest)


def feed_check(rt: Runtime) -> dict[str, Any]:
    """Fresh when a local feed is connected and recently heard from, or prices keep arriving."""
    stale_after = rt.settings.stale_after_s
    fresh = []
    if rt.feeds is not None:
        for name, h in rt.feeds.health().items():
            last = h.get("last_message_age_s")
            if h.get("state") in _UP_STATES and last is not None and last <= stale_after:
                fresh.append(name)
    newest = newest_price_age(rt, time.time())
    ok = bool(fresh) or (newest is not None and newest <= stale_after)
    return {"ok": ok, "fresh_feeds": fresh, "newest_price_age_s": None if newest is None else round(newest, 3)}


async def cache_check(rt: Runtime, subscribed: bool) -> dict[str, Any]:
    reachable = bool(await _within(rt.cache.ping()))
    ok = reachable and (rt.live.connected.is_set() or not subscribed) and not rt.meter.restoring
    lost = rt.meter.lost_at
    return {
        "ok": ok,
        "reachable": reachable,
        "subscribed": rt.live.connected.is_set(),
        # The cache lost its usage data (a restart without persistence): when this process saw it.
        "usage_data_lost_at": None if lost is None else round(lost, 3),
        "restoring_usage": rt.meter.restoring,
    }


async def database_check(rt: Runtime) -> dict[str, Any]:
    rows = await _within(asyncio.to_thread(rt.db.query, "SELECT 1"), 2 * PROBE_TIMEOUT_S)
    return {"ok": rows is not None}


async def readiness(rt: Runtime, service: str) -> dict[str, Any]:
    """The checks of one service; `ready` only when every check is ok."""
    if service == "LPO":
        checks = {"cache": await cache_check(rt, subscribed=True), "feeds": feed_check(rt)}
    elif service == "FEEDS":  # `beast serve --only feeds`: writes prices, serves none
        checks = {"cache": await cache_check(rt, subscribed=False), "feeds": feed_check(rt)}
    else:
        checks = {"cache": await cache_check(rt, subscribed=False), "database": await database_check(rt)}
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


def _not_ready_reason(checks: dict[str, Any]) -> str:
    reasons = []
    for name, check in checks.items():
        if check["ok"]:
            continue
        if name == "feeds":
            age_s = check["newest_price_age_s"]
            reasons.append("no fresh price feed" + ("" if age_s is None else f" (newest price {age_s:g} s old)"))
        elif name == "cache" and check.get("reachable") and check.get("restoring_usage"):
            reasons.append("cache lost its usage data: restoring month totals")
        else:
            reasons.append(f"{name} unreachable")
    return "not ready: " + "; ".join(reasons)


# ---- metrics collectors ---------------------------------------------------------------------


def runtime_samples(rt: Runtime) -> Iterable[Sample]:
    """Figures every process has: uptime, memory, prices held, usage buffered, sync."""
    yield sample("beast_uptime_seconds", "gauge", "Seconds since this process started.", time.time() - rt.started_at)
    yield sample("process_resident_memory_bytes", "gauge", "Resident memory of this process.", resident_memory_bytes())
    yield sample(
        "beast_cache_subscribed",
        "gauge",
        "1 while the price subscription to the cache is live.",
        1 if rt.live.connected.is_set() else 0,
    )
    yield sample(
        "beast_prices_held_assets", "gauge", "Assets with a price in this process's book.", len(rt.live.assets())
    )
    newest = newest_price_age(rt, time.time())
    if newest is not None:
        yield sample("beast_newest_price_age_seconds", "gauge", "Seconds since the newest price arrived.", newest)
    meter = rt.meter
    yield sample(
        "beast_usage_buffered_requests",
        "gauge",
        "Requests counted in process, not yet flushed to the cache.",
        meter.pending(),
    )
    yield sample(
        "beast_usage_flush_failures_total",
        "counter",
        "Usage flushes deferred because the cache was down.",
        meter.flush_failures,
    )
    yield sample(
        "beast_usage_cache_losses_total",
        "counter",
        "Times this process found the cache had lost its usage data (month totals restored).",
        meter.losses,
    )
    yield sample(
        "beast_usage_offline_units",
        "gauge",
        "Units served to limited keys while the cache was unreachable, not yet settled.",
        meter.offline_units(),
    )
    stats = sync.STATS
    yield sample("beast_sync_runs_total", "counter", "Usage sync passes started by this process.", stats.runs)
    yield sample(
        "beast_sync_failures_total", "counter", "Usage sync passes that failed (retried with backoff).", stats.failures
    )
    yield sample("beast_sync_buckets_total", "counter", "Minute buckets moved into the database.", stats.buckets)
    yield sample("beast_sync_requests_total", "counter", "Requests moved into the database.", stats.requests)
    if stats.last_success is not None:
        yield sample(
            "beast_sync_last_success_timestamp_seconds",
            "gauge",
            "When the last sync pass succeeded.",
            stats.last_success,
        )


async def cache_samples(rt: Runtime) -> Iterable[Sample]:
    started = time.perf_counter()
    up = bool(await _within(rt.cache.ping()))
    return [
        sample("beast_cache_up", "gauge", "1 when the cache answered a ping.", 1 if up else 0),
        sample(
            "beast_cache_ping_seconds",
            "gauge",
            "How long the cache took to answer a ping.",
            time.perf_counter() - started,
        ),
    ]


def feed_samples(rt: Runtime) -> Iterable[Sample]:
    if rt.feeds is None:
        return
    stale_after = rt.settings.stale_after_s
    for name, h in rt.feeds.health().items():
        last = h.get("last_message_age_s")
        fresh = h.get("state") in _UP_STATES and last is not None and last <= stale_after
        yield sample(
            "beast_feed_up",
            "gauge",
            "1 when the exchange feed is connected and fresh.",
            1 if fresh else 0,
            exchange=name,
        )
        if last is not None:
            yield sample(
                "beast_feed_last_message_age_seconds",
                "gauge",
                "Seconds since the feed's last message.",
                last,
                exchange=name,
            )
        for field, help_ in (
            ("reconnects", "Reconnections of the feed."),
            ("errors", "Problems the feed survived (garbage, error frames, lost connections)."),
            ("ticks", "Prices received from the feed."),
            ("messages", "Messages received from the feed."),
            ("watchdog_timeouts", "Times the feed went silent and was reconnected."),
        ):
            yield sample(f"beast_feed_{field}_total", "counter", help_, h.get(field, 0), exchange=name)


def install_runtime_collectors(rt: Runtime) -> None:
    """Once per process, however many servers it runs."""
    rt.metrics.add_collector("runtime", lambda: runtime_samples(rt))
    rt.metrics.add_collector("cache", lambda: cache_samples(rt))
    rt.metrics.add_collector("feeds", lambda: feed_samples(rt))


def add_ops_routes(api: FastAPI, rt: Runtime, envelopes: Envelopes, service: str) -> None:
    """GET /ready and GET /metrics on one of our FastAPI apps."""
    install_runtime_collectors(rt)

    @api.get("/ready", summary="Readiness: 200 when this server can answer well, 503 (with the reasons) otherwise")
    async def ready() -> Response:
        data = await readiness(rt, service)
        if data["ready"]:
            body = envelopes.ok("/ready", data)
        else:
            body = envelopes.error("/ready", 503, _not_ready_reason(data["checks"]), data=data)
        headers = {"Retry-After": "5"} if body["status_code"] == 503 else None  # as every 503
        return Response(dumps(body), status_code=body["status_code"], media_type="application/json", headers=headers)

    @api.get(
        "/metrics",
        summary="Prometheus metrics (text format): operators only (loopback, BEAST_METRICS_NETWORKS or BEAST_METRICS_TOKEN)",
    )
    async def metrics(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not metrics_allowed(rt.settings, client, request.headers.getlist("authorization")):
            message = "metrics are for operators: ask from loopback, from BEAST_METRICS_NETWORKS, or with Authorization: Bearer BEAST_METRICS_TOKEN"
            return Response(
                dumps(envelopes.error("/metrics", 403, message)), status_code=403, media_type="application/json"
            )
        return Response(await rt.metrics.render(), media_type=CONTENT_TYPE)


def ws_samples(stats: dict[str, int]) -> Iterable[Sample]:
    """The LPO's WebSocket feed: open connections and what it pushed, dropped and refused."""
    yield sample("beast_ws_clients", "gauge", "Open /ws/prices connections.", stats["clients"])
    yield sample("beast_ws_deliveries_total", "counter", "Price updates pushed to clients.", stats["deliveries"])
    yield sample("beast_ws_dropped_slow_total", "counter", "Clients dropped for not reading.", stats["dropped_slow"])
    yield sample(
        "beast_ws_refused_limit_total",
        "counter",
        "Connections refused by the per-key or per-address limit.",
        stats.get("refused_limit", 0),
    )
