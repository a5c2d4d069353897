"""OpenAPI documents of the LPO and LRS: every route with its envelope (UME) schema.

Some routes are answered below FastAPI (GET /price and /health on the LPO come from the thin
ASGI front) or return ready-made responses, so FastAPI cannot infer their shapes. Their path
items are written here, from one schema of the envelope, and merged over what FastAPI
generates: the document describes the one implementation, it does not add a second one.
tests/integration/test_openapi.py runs schemathesis against both documents.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.services.prices.answer import MAX_AGE_MS_LIMIT, MAX_ASSETS
from trinity_beast.services.reports.filters import FORMATS, GRANULARITIES, MAX_LIMIT, PROTOCOLS
from trinity_beast.services.reports.render import COLUMNS

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_NUMBER: Schema = {"type": "number"}
_INT: Schema = {"type": "integer"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_SECONDS_Z = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"  # the seed's one timestamp format
_ANY: Schema = {}


def envelope(data: Schema | None = None, description: str = "") -> Schema:
    """The UME: exactly the 12 fields, in this order; `data` as given (anything by default)."""
    properties: Schema = {
        "status": {
            "type": "string",
            "description": "`✅ [SERVICE] [region] [node] [/endpoint] [200]`, `❌ …` on errors",
        },
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
        "endpoint": _STRING,
        "cluster_node": _STRING,
        "region": _STRING,
        "language": _STRING,
        "api_key_id": {
            "type": ["string", "null"],
            "description": "the caller's public key id (`ak_…`), never the secret",
        },
        "ip_address": _STRING,
        "agent_profile_arn": {"type": "string", "pattern": r"^arn:tbi:[^:]+:[0-9]{12}:agent-profile/[^/]+/v1$"},
        "timestamp": {"type": "string", "pattern": _SECONDS_Z},
        "data": data if data is not None else _ANY,
        "error": {"type": "string", "description": '`""` on success, else why it failed'},
    }
    assert tuple(properties) == FIELDS
    schema: Schema = {
        "type": "object",
        "required": list(FIELDS),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


USAGE_FIELDS: dict[str, Schema] = {
    "monthly_usage": {"type": "integer", "minimum": 0},
    "monthly_limit": {"type": "integer", "minimum": 0, "description": "0 = unlimited"},
    "usage_pct": _NUMBER,
    "usage_warning": {"type": "string", "description": '`""` when there is nothing to warn about'},
}
PRICE_ENTRY = _object(
    {
        "asset": _STRING,
        "price": _NUMBER,
        "exchange": _STRING,
        "cached": {"type": "boolean"},
        "cache_age_seconds": _NUMBER,
        "timestamp": {"type": "integer", "description": "the exchange's time, whole Unix seconds"},
        "readable_timestamp": {"type": "string", "pattern": _SECONDS_Z},
        "latency_ms": _INT,
        "timestamp_ms": {"type": "integer", "description": "added: the exchange's time in Unix milliseconds"},
        "latency_us": {"type": "integer", "description": "added: latency_ms in whole microseconds"},
    },
    {
        "stale": {"type": "boolean"},
        "converted_from": _object({"quote": _STRING, "usd_rate": _NUMBER}),
        "sources": {"type": "array", "items": {"type": "object"}},
    },
)
PRICE_DATA = _object(
    {
        "assets": {"type": "array", "items": PRICE_ENTRY},
        "failed": {"type": "array", "items": _object({"asset": _STRING, "reason": _STRING})},
        "duration_ms": _INT,
        **USAGE_FIELDS,
        "duration_us": {"type": "integer", "description": "added: duration_ms in whole microseconds"},
    }
)
USAGE_ME_DATA = _object(
    {
        "api_key_id": _STRING,
        "name": _STRING,
        "tier": {"enum": ["partner", "subscriber", "admin"]},
        **USAGE_FIELDS,
        "remaining": {"type": ["integer", "null"]},
        "resets_at": _STRING,
    }
)
HEALTH_DATA = _object({"status": {"const": "ok"}, "uptime_s": _NUMBER})
READY_DATA = _object({"ready": {"type": "boolean"}, "checks": {"type": "object"}})
LISTING_DATA = _object(
    {
        "version": _INT,
        "count": _INT,
        "assets": {
            "type": "array",
            "items": _object({"asset": _STRING, "name": _STRING, "exchanges": {"type": "array", "items": _STRING}}),
        },
    }
)
REPORT_ROW = _object(
    {c: (_INT if c in ("status", "requests") else _NUMBER if c.startswith("latency") else _STRING) for c in COLUMNS}
)
REPORT_DATA = _object(
    {
        "rows": {"type": "array", "items": REPORT_ROW},
        "paging": _object({"total": _INT, "limit": _INT, "returned": _INT, "next_cursor": _NULLABLE_STRING}),
        "filters": {"type": "object"},
        "includes_unsynced": {"type": "boolean"},
        "missing": {"type": "array", "items": {"enum": ["cache", "database"]}},
    }
)

_REASONS = {
    200: "OK",
    400: "a malformed request; `error` says what to fix",
    401: "missing, invalid or revoked key",
    403: "this key may not see that",
    404: "nothing could be answered",
    429: "a subscriber past its monthly limit",
    503: "a store this answer needs is unreachable; retry shortly",
}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKeyQuery": []}, {}]
_API_KEY_PARAM: Schema = {
    "name": "api_key",
    "in": "query",
    "required": False,
    "description": "the API key, when it is not sent as `Authorization: Bearer KEY`",
    "schema": _STRING,
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: Schema, statuses: tuple[int, ...], ok_status: int = 200) -> Schema:
    """`ok` for the success status; an envelope with any `data` for every error status."""
    out: Schema = {str(ok_status): _json(envelope(ok), _REASONS.get(ok_status, "OK"))}
    for status in statuses:
        out[str(status)] = _json(envelope(), _REASONS[status])
    return out


def _get(summary: str, responses: Schema, parameters: list[Schema] | None = None, auth: bool = True) -> Schema:
    op: Schema = {"summary": summary, "responses": responses, "parameters": parameters or []}
    if auth:
        op["security"] = _AUTH
        op["parameters"] = [*op["parameters"], _API_KEY_PARAM]
    return {"get": op}


def _query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def common_paths() -> dict[str, Schema]:
    """Routes both servers have: liveness, readiness, metrics, the caller's own usage."""
    return {
        "/health": _get("Liveness: the process answers (no key)", _responses(HEALTH_DATA, ()), auth=False),
        "/ready": _get(
            "Readiness: 200 when this server can answer well; 503 with the failing checks otherwise (no key)",
            {"200": _json(envelope(READY_DATA), "ready"), "503": _json(envelope(READY_DATA), "not ready")},
            auth=False,
        ),
        "/metrics": _get(
            "Prometheus metrics in the text format (no key)",
            {"200": {"description": "metrics", "content": {"text/plain": {"schema": _STRING}}}},
            auth=False,
        ),
        "/usage/me": _get(
            "This key's plan, usage this month, what remains and when it resets",
            _responses(USAGE_ME_DATA, (401, 503)),
        ),
    }


def lpo_paths() -> dict[str, Schema]:
    price_params = [
        _query(
            "asset",
            {"type": "string"},
            f"one asset (`BTC`) or several (`BTC,ETH,SOL`, or the parameter repeated); at most {MAX_ASSETS}",
            required=True,
        ),
        _query("aggregate", {"enum": ["best", "median"]}, "`median`: the median of all fresh exchanges"),
        _query(
            "max_age_ms",
            {"type": "integer", "minimum": 1, "maximum": MAX_AGE_MS_LIMIT},
            "refuse cached prices older than this (a live REST price is fetched instead)",
        ),
    ]
    return {
        **common_paths(),
        "/price": _get(
            "Latest USD prices of one or more assets",
            _responses(PRICE_DATA, (400, 401, 404, 429, 503)),
            price_params,
        ),
        "/ws/assets": _get(
            "The prewarmed assets and the exchanges that quote each (no key)", _responses(LISTING_DATA, ()), auth=False
        ),
    }


def lrs_paths() -> dict[str, Schema]:
    report_params = [
        _query("format", {"enum": list(FORMATS)}, "`json` (an envelope) or a file: `csv`, `tsv`, `text`"),
        _query("from", _STRING, "ISO date or date-time, inclusive (default: start of this month, UTC)"),
        _query("to", _STRING, "ISO date or date-time, exclusive; a date alone means the end of that day"),
        _query("granularity", {"enum": list(GRANULARITIES)}, "period of each row (default `hour`)"),
        _query("api_key_id", _STRING, "one key (`ak_…`); another key than your own needs an admin key"),
        _query("endpoint", _STRING, "e.g. `/price`"),
        _query("asset", _STRING, "e.g. `BTC`"),
        _query("protocol", {"enum": list(PROTOCOLS)}, "`http`, `udp` or `ws`"),
        _query("status", {"type": "integer", "minimum": 100, "maximum": 599}, "an HTTP status code"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "rows per page (default 1000)"),
        _query("cursor", _STRING, "the `next_cursor` of the previous page"),
    ]
    files = {f"text/{kind}": {"schema": _STRING} for kind in ("csv", "tab-separated-values", "plain")}
    ok = _json(envelope(REPORT_DATA), "a report page (json), or a CSV, TSV or text file")
    ok["content"].update(files)
    responses = {"200": ok, **{str(s): _json(envelope(), _REASONS[s]) for s in (400, 401, 403, 503)}}
    return {**common_paths(), "/reports/usage": _get("Usage report", responses, report_params)}


SECURITY_SCHEMES: Schema = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer KEY`"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
}


def install_openapi(api: FastAPI, paths: dict[str, Schema]) -> None:
    """Serve FastAPI's document with these hand-written path items merged over its own."""

    def openapi() -> Schema:
        if api.openapi_schema is None:
            doc = get_openapi(title=api.title, version=api.version, routes=api.routes, description=api.description)
            doc["paths"] = {**doc.get("paths", {}), **paths}
            doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
