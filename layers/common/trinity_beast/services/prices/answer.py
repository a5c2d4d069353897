"""Answering a price request: the one implementation behind HTTP /price and UDP.

Authenticate, validate the asset list, check the month's quota, look the prices up in the
in-process book (the cache on a local miss), meter the request, build the envelope.
Transports only adapt their input to `PriceRequest` and their output from `PriceAnswer`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.book import age, median, pick
from trinity_beast.domain.envelope import Envelopes, dumps, utc_iso
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.text import asset_symbol, whole_number
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import NO_ASSET, Quota, usage_fields
from trinity_beast.services.auth import KEYS_UNAVAILABLE, Credentials, authenticate, quota_for
from trinity_beast.services.prices.errors import BadRequest, NoPrice, Throttled
from trinity_beast.services.prices.shape import asset_entry, data_timing, median_entry, price_data
from trinity_beast.services.prices.splice import Prebuilt, Template
from trinity_beast.stores.cache import CacheUnavailable

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings
    from trinity_beast.services.auth import KeyRing
    from trinity_beast.services.meter import Meter
    from trinity_beast.services.prices.fallback import RestFallback
    from trinity_beast.services.prices.live import LivePrices

MAX_ASSETS = 50
ENDPOINT = "/price"


def parse_assets(values: Iterable[str]) -> tuple[str, ...]:
    """`["BTC,eth", "SOL"]` -> `("BTC", "ETH", "SOL")`: upper-cased, de-duplicated, validated."""
    return _parse_assets(tuple(values))


@functools.lru_cache(maxsize=2048)
def _parse_assets(values: tuple[str, ...]) -> tuple[str, ...]:
    """Clients ask for the same lists again and again: each list is validated once (errors are not cached)."""
    assets: list[str] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            asset = asset_symbol(part)
            if asset is None:
                shown = part.strip()[:20]
                raise BadRequest(f"malformed asset {shown!r}: an asset is 1-15 letters or digits, e.g. BTC")
            if asset not in assets:
                assets.append(asset)
    if not assets:
        raise BadRequest("missing asset: ask for ?asset=BTC or ?asset=BTC,ETH,SOL")
    if len(assets) > MAX_ASSETS:
        raise BadRequest(f"too many assets: {len(assets)} asked, at most {MAX_ASSETS} per request")
    return tuple(assets)


MAX_AGE_MS_LIMIT = 86_400_000


def parse_options(aggregate: str | None, max_age_ms: str | None) -> tuple[str, float | None]:
    """(aggregate, max age in seconds) from the raw query values."""
    mode = (aggregate or "best").strip().lower()
    if mode not in ("best", "median"):
        raise BadRequest(
            f"unknown aggregate {(aggregate or '')[:20]!r}: use aggregate=median, or leave it out for the priority price"
        )
    if max_age_ms is None:
        return mode, None
    value = whole_number(max_age_ms)
    if value is None:
        raise BadRequest(f"max_age_ms must be a whole number of milliseconds (digits 0-9), got {max_age_ms[:20]!r}")
    if not 1 <= value <= MAX_AGE_MS_LIMIT:
        raise BadRequest(f"max_age_ms must be between 1 and {MAX_AGE_MS_LIMIT}, got {value}")
    return mode, value / 1000


@dataclass(frozen=True, slots=True)
class PriceRequest:
    secret: Credentials | str | None  # Credentials from a header/query (HTTP), the payload's key (UDP)
    assets: list[str]  # raw values as sent; parse_assets validates them
    protocol: str  # "http" or "udp"
    aggregate: str | None = None
    max_age_ms: str | None = None
    max_datagram_bytes: int = 0  # UDP: an answer larger than this is refused (413) and nothing is billed


@dataclass(frozen=True, slots=True)
class PriceAnswer:
    status: int
    body: dict[str, Any] | None  # None when `payload` holds the answer already serialized
    key: ApiKey | None = None
    quota: Quota | None = None
    payload: bytes | None = None  # a prebuilt answer (splice.py)

    def encoded(self) -> bytes:
        """The answer's JSON bytes."""
        if self.payload is not None:
            return self.payload
        assert self.body is not None, "an answer has a body or a payload"
        return dumps(self.body)

    @property
    def error(self) -> str:
        """The envelope's error ("" for a prebuilt answer: only successes are prebuilt)."""
        return "" if self.body is None else str(self.body.get("error") or "")


class PriceDesk:
    """Answers price requests: the one implementation behind HTTP /price and UDP.

    Built once per process from the services it needs; the REST fallback is reached through
    `fallback()` so processes that never miss the book never build it (it imports httpx).
    """

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        meter: Meter,
        live: LivePrices,
        fallback: Callable[[], RestFallback],
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._meter = meter
        self._live = live
        self._fallback = fallback
        self._prebuilt = Prebuilt(live, settings, ENDPOINT)

    async def held(self, asset: str) -> dict[str, Tick]:
        """The ticks this process holds for `asset`, reading the cache once on a local miss."""
        ticks = self._live.get(asset)
        if not ticks:
            try:
                ticks = await self._live.refresh(asset)
            except CacheUnavailable:
                ticks = {}
        return ticks

    async def lookup(
        self, asset: str, now: float, aggregate: str, max_age_s: float | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The answer entry for `asset`, or the reason there is none."""
        started = time.perf_counter()
        settings = self._settings
        ticks = await self.held(asset)
        if aggregate == "median":
            m = median(ticks, now, max_age_s or settings.stale_after_s)
            if m is not None:
                return median_entry(asset, m, now, time.perf_counter() - started), None

        tick, _fresh = pick(ticks, settings.exchange_priority, now, settings.stale_after_s)
        limit = settings.stale_after_s if max_age_s is None else max_age_s
        if tick is not None and age(tick, now) <= limit:
            return asset_entry(tick, now, time.perf_counter() - started), None
        try:
            live = await self._fallback().fetch(asset)
        except NoPrice as exc:
            if tick is None:
                return None, str(exc)
            if isinstance(exc, Throttled):  # what is held, saying why it is not newer
                recent = self._fallback().recent(asset)
                if recent is not None and recent.received_ts > tick.received_ts:
                    tick = recent
                entry = asset_entry(tick, now, time.perf_counter() - started)
                if age(tick, now) > settings.stale_after_s:
                    entry["stale"] = True
                if max_age_s is not None:
                    entry["max_age_met"] = False
                entry["note"] = str(exc)
                return entry, None
            if max_age_s is not None:
                ms = round(age(tick, now) * 1000)
                return None, f"price of {asset} is {ms} ms old, older than max_age_ms={round(max_age_s * 1000)}; {exc}"
            entry = asset_entry(tick, now, time.perf_counter() - started)
            entry["stale"] = True
            return entry, None
        return asset_entry(live, time.time(), time.perf_counter() - started, cached=False), None

    async def answer(self, request: PriceRequest, envelopes: Envelopes) -> PriceAnswer:
        """Authenticate, validate, look the prices up, reserve one unit per price found (the
        billing rule, docs/usage.md), answer what was reserved and meter it."""
        started = time.perf_counter()
        meter = self._meter
        try:
            key, problem = await authenticate(self._keys, request.secret, request.protocol)
        except DatabaseUnavailable:
            return PriceAnswer(503, envelopes.error(ENDPOINT, 503, KEYS_UNAVAILABLE))
        if problem is not None:
            return PriceAnswer(401, envelopes.error(ENDPOINT, 401, problem))
        assert key is not None
        limit = 0 if key.unlimited else key.monthly_limit

        def build(status: int, data: Any, error: str | None, served: list[str], quota: Quota | None) -> PriceAnswer:
            if quota is not None and not limit:  # usage as it stands once `record` has counted `served`
                quota = Quota(meter.quota(key.id, 0).used + len(served), 0, quota.reset_at)
                if data is not None and "monthly_usage" in data:
                    data.update(usage_fields(quota))
            body = envelopes.build(ENDPOINT, status, data=data, error=error, api_key_id=key.id)
            return PriceAnswer(status, body, key, quota)

        def record(status: int, served: list[str] | tuple[str, ...]) -> None:
            latency = time.perf_counter() - started
            for asset in served:  # one row per price delivered: its label is a served (known) asset
                meter.record(key.id, ENDPOINT, asset, request.protocol, status, latency, billable=not limit)
            if not served:  # refusals, errors and misses: one row in the fixed bucket, never billed
                meter.record(key.id, ENDPOINT, NO_ASSET, request.protocol, status, latency, billable=False)

        def finish(status: int, data: Any, error: str | None, served: list[str], quota: Quota | None) -> PriceAnswer:
            answer = build(status, data, error, served, quota)
            record(status, served)
            return answer

        def oversize(size: int) -> PriceAnswer:  # a 413 that costs nothing: no unit is reserved or billed
            return finish(413, None, too_large(size, request.max_datagram_bytes), [], None)

        async def deliver(answer: PriceAnswer, served: list[str] | tuple[str, ...]) -> PriceAnswer:
            """Meter an answer that serves prices, unless it is too large for its datagram: then
            the units go back and the client gets a 413 that costs nothing."""
            if request.max_datagram_bytes:
                payload = answer.encoded()
                if len(payload) > request.max_datagram_bytes:
                    if limit:
                        await meter.release(key.id, len(served))
                    return oversize(len(payload))
                answer = PriceAnswer(answer.status, None, answer.key, answer.quota, payload)
            record(answer.status, served)
            return answer

        try:
            assets = parse_assets(request.assets)
            aggregate, max_age_s = parse_options(request.aggregate, request.max_age_ms)
        except BadRequest as exc:
            return finish(400, None, str(exc), [], None)

        quota = await quota_for(meter, key)
        if quota.exhausted:
            return finish(429, usage_fields(quota), limit_reached(quota), [], quota)

        now = time.time()
        template: Template | None = None
        if aggregate == "best" and max_age_s is None:  # the common request: prebuilt while its prices are fresh
            template = self._prebuilt.template(envelopes, assets, now)
        if template is not None:
            # Usage if every asset is served; an unlimited key's is final (nothing awaited since quota_for).
            whole = Quota(quota.used + len(assets), limit, quota.reset_at)
            payload = template.render(envelopes, key.id, whole, now, started) if request.max_datagram_bytes else None
            if payload is not None and len(payload) > request.max_datagram_bytes:  # refused before any unit is taken
                return oversize(len(payload))
            grant = await meter.reserve(key.id, limit, len(assets)) if limit else None
            if grant is None or grant.units == len(assets):
                quota = grant.quota if grant else whole
                if payload is None or quota != whole:
                    payload = template.render(envelopes, key.id, quota, now, started)
                return await deliver(PriceAnswer(200, None, key, quota, payload), assets)
            entries = template.entries(now, started)  # only some granted: the full answer below
            failed: list[dict[str, str]] = []
        else:
            entries, failed = await self._look_up(assets, now, aggregate, max_age_s)
            if entries and request.max_datagram_bytes:  # as above, before any unit is taken
                whole = Quota(quota.used + len(entries), limit, quota.reset_at)
                body = envelopes.build(
                    ENDPOINT, 200, price_data(entries, failed, data_timing(0.0, whole)), api_key_id=key.id
                )
                size = len(dumps(body))
                if size > request.max_datagram_bytes:
                    return oversize(size)
            grant = await meter.reserve(key.id, limit, len(entries)) if entries and limit else None

        if grant is not None:
            quota = grant.quota
            if grant.units < len(entries):
                why = OFFLINE_REFUSAL if grant.offline and not quota.exhausted else limit_reached(quota)
                failed.extend({"asset": e["asset"], "reason": why} for e in entries[grant.units :])
                entries = entries[: grant.units]
                if not entries:
                    status = 503 if grant.offline and not quota.exhausted else 429
                    return finish(status, usage_fields(quota), why, [], quota)

        if not entries:
            data = price_data([], failed, data_timing(time.perf_counter() - started, quota))
            return finish(404, data, "no price available for " + ", ".join(f["asset"] for f in failed), [], quota)
        served = [e["asset"] for e in entries]
        data = price_data(entries, failed, data_timing(time.perf_counter() - started, quota))
        return await deliver(build(200, data, None, served, quota), served)

    async def _look_up(
        self, assets: tuple[str, ...], now: float, aggregate: str, max_age_s: float | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """(entries, failed): each asset looked up; several concurrently, so one miss holds up no other."""
        if len(assets) == 1:  # the common case needs no task per asset
            results = [await self.lookup(assets[0], now, aggregate, max_age_s)]
        else:
            results = await asyncio.gather(*(self.lookup(a, now, aggregate, max_age_s) for a in assets))
        entries: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        for asset, (entry, reason) in zip(assets, results, strict=True):
            if entry is None:
                failed.append({"asset": asset, "reason": reason or "no price"})
            else:
                entries.append(entry)
        return entries, failed


OFFLINE_REFUSAL = "usage store unreachable and this process's allowance for limited keys is used up; retry shortly"


DATAGRAM_ADVICE = "ask for fewer assets per datagram, or use HTTP /price"


def too_large(size: int, limit: int, advice: str = DATAGRAM_ADVICE) -> str:
    """The 413's error for an answer over one datagram (this desk's and transports/udp's fit)."""
    return f"the answer would be {size} bytes, over the {limit}-byte datagram limit: {advice}"


def limit_reached(quota: Quota) -> str:
    return f"monthly limit of {quota.limit} prices reached; the limit resets at {utc_iso(quota.reset_at)}"
