"""The Command Center on the LRS port: the /admin page, its admin-only JSON, and the
partner routes (transports.http.partners) mounted on the LRS.

The page (static/) is a shell that holds no data: it asks for the admin key, keeps it in
the tab's sessionStorage and reads everything from the endpoints below with it. In
`beast serve` the LPO and LRS share one Runtime, so feed health and prices here are the
serving process's own.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from trinity_beast.domain.envelope import Envelopes
from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.usage import NO_ASSET
from trinity_beast.services.auth import authenticate
from trinity_beast.services.partners.wizard import REGIONS, StackNetwork
from trinity_beast.services.reports.filters import parse_filters
from trinity_beast.services.reports.gather import gather
from trinity_beast.transports.http.common import envelope_response, request_secret
from trinity_beast.transports.http.partners import PartnerApi
from trinity_beast.transports.ws.frames import ENDPOINT as WS_ENDPOINT

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

STATIC = resources.files(__package__).joinpath("static")
STATIC_FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "chart.umd.min.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
UNLISTED = "unlisted or malformed names (not stored)"
RANGES = {"1h": (3600, "minute"), "24h": (86400, "hour"), "7d": (7 * 86400, "hour")}
TOP_KEYS = 8
TICKER_ASSETS = 8
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_partner_routes(api: FastAPI, rt: Runtime, envelopes: Envelopes) -> PartnerApi:
    """/partners… and /security-groups/udp, answered by the transport-neutral PartnerApi."""
    partners = PartnerApi(rt, rt.envelopes(envelopes.service, "partners"))  # the partners agent profile
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def dispatch(request: Request) -> Response:
        answer = await partners.handle(
            request.method,
            request.url.path,
            request_secret(request),
            request.query_params.multi_items(),
            await request.body(),
        )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=answer.headers)

    for path in ("/partners", "/partners/{rest:path}", "/security-groups/udp"):
        api.add_api_route(path, dispatch, methods=methods, include_in_schema=False)
    return partners


async def _admin(rt: Runtime, request: Request, envelopes: Envelopes) -> tuple[ApiKey | None, Response | None]:
    endpoint = request.url.path
    key, problem = await authenticate(rt.keys, request_secret(request))
    if problem is not None or key is None:
        body = envelopes.error(endpoint, 401, problem or "invalid API key")
        return None, envelope_response(body, {"WWW-Authenticate": 'Bearer realm="trinity-beast"'})
    if key.tier != "admin":
        return None, envelope_response(
            envelopes.error(
                endpoint, 403, f"the Command Center needs an admin key; this is a {key.tier} key", api_key_id=key.id
            )
        )
    return key, None


async def usage_series(rt: Runtime, window: str, now: float | None = None, key_id: str | None = None) -> dict[str, Any]:
    """Requests over time per key and per protocol, and the most asked-for assets.

    Honest about what it shows: admin keys (this console's polling and ticker among them)
    are their own `console` series, left out of every other figure; asset names that are
    not listed assets are one "invalid names" bar; `key_id` narrows everything to one key."""
    span, granularity = RANGES[window]
    now = time.time() if now is None else now
    step = 60 if granularity == "minute" else 3600
    end = int(now) - int(now) % step + step
    start = end - span
    reader = rt.report_reader
    filters = parse_filters(
        [("from", _iso(start)), ("to", _iso(end)), ("granularity", granularity)], now, reader.limits, reader.cursor_key
    )
    rows, complete = await gather(rt.cache, reader, filters)
    names = {k.id: (k.name, k.tier) for k in await asyncio.to_thread(rt.db.list_keys)}
    listed = {a["asset"] for a in rt.registry.listing()["assets"]}
    buckets = list(range(start, end, step))
    index = {b: i for i, b in enumerate(buckets)}
    per_key: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
    per_protocol: dict[str, list[int]] = {p: [0] * len(buckets) for p in ("http", "udp", "ws")}
    console = [0] * len(buckets)
    console_keys: set[str] = set()
    assets: dict[str, int] = defaultdict(int)
    invalid: dict[str, int] = defaultdict(int)
    totals = {"requests": 0, "errors": 0}
    for row in rows:
        i = index.get(row.bucket)
        if i is None:
            continue
        n = row.counts.n
        key = row.group.api_key_id
        if key_id is not None and key != key_id:
            continue
        if names.get(key, ("?", "?"))[1] == "admin" and key_id is None:
            console[i] += n
            console_keys.add(key)
            continue
        per_key[key][i] += n
        per_protocol.setdefault(row.group.protocol, [0] * len(buckets))[i] += n
        totals["requests"] += n
        totals["errors"] += n if row.group.status >= 400 else 0
        for asset in row.group.asset.split(","):
            if asset == NO_ASSET:  # refused names are stored under this one label (docs/usage.md)
                if row.group.status >= 400:
                    invalid[NO_ASSET] += n
            elif asset:
                (assets if asset in listed else invalid)[asset] += n
    ranked = sorted(per_key, key=lambda k: -sum(per_key[k]))
    keys = [
        {
            "api_key_id": k,
            "name": names.get(k, ("?", "?"))[0],
            "tier": names.get(k, ("?", "?"))[1],
            "counts": per_key[k],
            "total": sum(per_key[k]),
        }
        for k in ranked[:TOP_KEYS]
    ]
    if len(ranked) > TOP_KEYS:
        rest = [sum(per_key[k][i] for k in ranked[TOP_KEYS:]) for i in range(len(buckets))]
        keys.append(
            {
                "api_key_id": "other",
                "name": f"{len(ranked) - TOP_KEYS} other keys",
                "tier": "-",
                "counts": rest,
                "total": sum(rest),
            }
        )
    top = [
        {"asset": a, "requests": n, "invalid": False}
        for a, n in sorted(assets.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    ]
    if invalid:
        top.append(
            {
                "asset": f"invalid names ({len(invalid)})",
                "requests": sum(invalid.values()),
                "invalid": True,
                # Names no exchange lists are counted under one label, never stored (docs/usage.md).
                "names": [UNLISTED if a == NO_ASSET else a for a in sorted(invalid, key=lambda a: -invalid[a])[:20]],
            }
        )
    return {
        "range": window,
        "granularity": granularity,
        "timezone": "UTC",
        "key_filter": key_id,
        "labels": [_iso(b) for b in buckets],
        "by_key": keys,
        "by_protocol": [{"protocol": p, "counts": c, "total": sum(c)} for p, c in per_protocol.items()],
        "console": {
            "counts": console,
            "total": sum(console),
            "keys": sorted(console_keys),
            "note": "admin keys (this console's own polling and live ticker), left out of the other figures",
        },
        "top_assets": top,
        "totals": {**totals, "keys": len(ranked)},
        "includes_unsynced": complete,
    }


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def add_command_center(api: FastAPI, rt: Runtime, envelopes: Envelopes) -> None:
    """GET /admin (the page), its static files, and its admin-only JSON under /admin/api."""
    add_partner_routes(api, rt, envelopes)

    @api.get("/admin", include_in_schema=False)
    async def page() -> Response:
        html = STATIC.joinpath("index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @api.get("/admin/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return envelope_response(envelopes.error(f"/admin/static/{name[:60]}", 404, f"unknown file {name[:60]}"))
        with resources.as_file(STATIC.joinpath(name)) as path:
            return FileResponse(path, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    @api.get("/admin/api/session", summary="Command Center: who is signed in, and where the LPO listens (admin)")
    async def session(request: Request) -> Response:
        key, refused = await _admin(rt, request, envelopes)
        if refused is not None:
            return refused
        assert key is not None  # _admin returns a key or a refusal
        s = rt.settings
        stack = StackNetwork.from_settings(s)
        missing = {
            "privatelink": stack.missing("privatelink", "wizard"),
            "peering": sorted(set(stack.missing("peering", "wizard")) | set(stack.missing("peering", "udp"))),
        }
        data = {
            "api_key_id": key.id,
            "name": key.name,
            "region": s.region,
            "cluster_node": s.cluster_node,
            "lpo_port": s.lpo_port,
            "lrs_port": s.lrs_port,
            "ws_path": WS_ENDPOINT,
            "udp_ports": [s.lpo_udp_port, s.lrs_udp_port],
            "partner_network": {"configured": not any(missing.values()), "missing": missing},
            "regions": list(REGIONS),
        }
        return envelope_response(envelopes.ok("/admin/api/session", data, api_key_id=key.id))

    @api.get("/admin/api/usage", summary="Command Center: requests over time per key and protocol, top assets (admin)")
    async def usage(request: Request) -> Response:
        key, refused = await _admin(rt, request, envelopes)
        if refused is not None:
            return refused
        assert key is not None  # _admin returns a key or a refusal
        window = request.query_params.get("range", "1h")
        if window not in RANGES:
            body = envelopes.error(
                "/admin/api/usage", 400, f"range: expected one of {', '.join(RANGES)}", api_key_id=key.id
            )
            return envelope_response(body)
        partner_id = request.query_params.get("partner") or None
        key_id = None
        if partner_id is not None:
            found = (
                await asyncio.to_thread(rt.db.partner_by_id, partner_id[:64]) if partner_id.startswith("pt_") else None
            )
            if found is None or not found.api_key_id:
                body = envelopes.error(
                    "/admin/api/usage", 400, f"partner: unknown partner {partner_id[:40]!r}", api_key_id=key.id
                )
                return envelope_response(body)
            key_id = found.api_key_id
        data = await usage_series(rt, window, key_id=key_id)
        return envelope_response(envelopes.ok("/admin/api/usage", data, api_key_id=key.id))

    @api.get("/admin/api/feeds", summary="Command Center: each exchange feed's health in this process (admin)")
    async def feeds(request: Request) -> Response:
        key, refused = await _admin(rt, request, envelopes)
        if refused is not None:
            return refused
        assert key is not None  # _admin returns a key or a refusal
        held = rt.live.assets()
        listed = [a["asset"] for a in rt.registry.listing()["assets"]]
        data = {
            "in_process": rt.feeds is not None,
            "exchanges": None if rt.feeds is None else rt.feeds.health(),
            "assets_held": len(held),
            "ticker_assets": [a for a in listed if a in held][:TICKER_ASSETS] or listed[:TICKER_ASSETS],
            "uptime_s": round(time.time() - rt.started_at, 1),
            **{k: v for k, v in rt.health().items() if k != "feeds"},
        }
        return envelope_response(envelopes.ok("/admin/api/feeds", data, api_key_id=key.id))
