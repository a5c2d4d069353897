"""Usage answers for any transport: GET /reports/usage and GET /usage/me.

The LRS, the LPO (/usage/me) and the reports Lambda all call these; they only adapt the
request (secret, query pairs) and the `Answer` (status, body, content type, headers).
Each answered request is metered like any other (not billable: reading your usage never
uses up your limit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trinity_beast.domain.envelope import Envelopes, dumps, utc_iso
from trinity_beast.domain.errors import DatabaseUnavailable, StatementTimeout
from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.usage import Quota, rate_limit_headers, usage_fields
from trinity_beast.services.auth import KEYS_UNAVAILABLE, Credentials, authenticate, quota_for
from trinity_beast.services.reports.errors import ReportError
from trinity_beast.services.reports.filters import parse_filters
from trinity_beast.services.reports.gather import report
from trinity_beast.services.reports.render import CONTENT_TYPES, page_data, render_file

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

REPORT_ENDPOINT = "/reports/usage"
USAGE_ME_ENDPOINT = "/usage/me"
JSON = CONTENT_TYPES["json"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def report_too_slow(timeout_s: float) -> str:
    return (
        f"the report took longer than the {timeout_s:g}-second limit (BEAST_REPORT_TIMEOUT_S) and was stopped: "
        "narrow from/to or the filters, or use a coarser granularity"
    )


def limit_headers(quota: Quota) -> dict[str, str]:
    """The X-RateLimit-* headers /price sends, as a plain dict."""
    return {name.decode(): value.decode() for name, value in rate_limit_headers(quota)}


async def _authorized(
    rt: Runtime, secret: Credentials | str | None, endpoint: str, envelopes: Envelopes
) -> tuple[ApiKey | None, Answer | None]:
    try:
        key, problem = await authenticate(rt.keys, secret)
    except DatabaseUnavailable:
        return None, Answer(503, dumps(envelopes.error(endpoint, 503, KEYS_UNAVAILABLE)), headers={"Retry-After": "5"})
    if problem is not None:
        body = envelopes.error(endpoint, 401, problem)
        return None, Answer(401, dumps(body), headers={"WWW-Authenticate": 'Bearer realm="trinity-beast"'})
    return key, None


def _metered(rt: Runtime, key: ApiKey, endpoint: str, answer: Answer, started: float) -> Answer:
    rt.meter.record(key.id, endpoint, "-", "http", answer.status, time.perf_counter() - started, billable=False)
    return answer


async def answer_usage_me(rt: Runtime, secret: Credentials | str | None, envelopes: Envelopes) -> Answer:
    """The caller's own plan and where it stands this month."""
    started = time.perf_counter()
    key, refused = await _authorized(rt, secret, USAGE_ME_ENDPOINT, envelopes)
    if refused is not None:
        return refused
    assert key is not None
    quota = await quota_for(rt.meter, key)
    data = {
        "api_key_id": key.id,
        "name": key.name,
        "tier": key.tier,
        **usage_fields(quota),
        "remaining": quota.remaining,
        "resets_at": utc_iso(quota.reset_at),
    }
    body = envelopes.ok(USAGE_ME_ENDPOINT, data, api_key_id=key.id)
    headers = limit_headers(quota)
    return _metered(rt, key, USAGE_ME_ENDPOINT, Answer(200, dumps(body), headers=headers), started)


def own_key(key: ApiKey) -> str | None:
    """Whose usage a key may see: every key's for an admin (None), else only its own."""
    return None if key.tier == "admin" else key.id


def not_yours(key: ApiKey) -> str:
    return f"a {key.tier} key sees only its own usage (api_key_id={key.id})"


async def answer_report(
    rt: Runtime, secret: Credentials | str | None, params: Sequence[tuple[str, str]], envelopes: Envelopes
) -> Answer:
    """A usage report page. Admin keys see every key; any other key only its own usage."""
    started = time.perf_counter()
    key, refused = await _authorized(rt, secret, REPORT_ENDPOINT, envelopes)
    if refused is not None:
        return refused
    assert key is not None

    def error(status: int, message: str) -> Answer:
        body = envelopes.error(REPORT_ENDPOINT, status, message, api_key_id=key.id)
        return _metered(rt, key, REPORT_ENDPOINT, Answer(status, dumps(body)), started)

    try:
        limits, cursor_key = rt.report_reader.limits, rt.report_reader.cursor_key
        filters = parse_filters(params, time.time(), limits, cursor_key, own_key(key))
    except ReportError as exc:
        return error(400, str(exc))
    except PermissionError:
        return error(403, not_yours(key))
    try:
        page = await report(rt.cache, rt.report_reader, filters)
    except StatementTimeout:
        return error(503, report_too_slow(rt.report_reader.limits.timeout_s))
    if set(page.missing) >= {"cache", "database"}:
        return error(503, "usage report unavailable: neither the cache nor the database can be reached; retry shortly")
    reader = rt.report_reader  # rendering up to MAX_LIMIT rows is CPU work: off the event loop
    if filters.format == "json":
        body = await reader.run(
            lambda: dumps(envelopes.ok(REPORT_ENDPOINT, page_data(filters, page), api_key_id=key.id))
        )
        answer = Answer(200, body)
    else:
        content, headers = await reader.run(render_file, filters, page)
        answer = Answer(200, content, CONTENT_TYPES[filters.format], headers)
    return _metered(rt, key, REPORT_ENDPOINT, answer, started)
