"""UDP usage summaries on the LRS UDP port.

Request: `{"report": "usage", "api_key": "KEY"}` plus any of the HTTP report filters
(`from`, `to`, `api_key_id`, `endpoint`, `asset`, `protocol`, `status`). Answer: one
envelope whose data sums the matching usage (totals, by protocol, status and endpoint, top
assets) — the full row-level formats stay on HTTP `/reports/usage`. Same tenant rules as
HTTP: a non-admin key sees only its own usage.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.envelope import dumps
from trinity_beast.domain.errors import DatabaseUnavailable, StatementTimeout
from trinity_beast.services.auth import KEYS_UNAVAILABLE, authenticate
from trinity_beast.services.reports.answers import not_yours, own_key, report_too_slow
from trinity_beast.services.reports.errors import ReportError
from trinity_beast.services.reports.filters import iso, parse_filters
from trinity_beast.services.reports.gather import Row, gather
from trinity_beast.transports.udp.datagram import (
    BadDatagram,
    DatagramServer,
    Reply,
    decode_object,
    fit,
    small_error,
    stranger_error,
)

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

ENDPOINT = "/reports/usage"
FILTERS = ("from", "to", "api_key_id", "endpoint", "asset", "protocol", "status")
FIELDS = ("report", "api_key", *FILTERS)
EXAMPLE = '{"report": "usage", "api_key": "KEY"}'
TOP_ASSETS = 5


def summarize(rows: Iterable[Row]) -> dict[str, Any]:
    """Totals of report rows: what a UDP client can hold in one datagram."""
    requests = errors = latency_sum = latency_max = 0
    by_protocol: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_endpoint: Counter[str] = Counter()
    by_asset: Counter[str] = Counter()
    keys: set[str] = set()
    for row in rows:
        n = row.counts.n
        requests += n
        errors += n if row.group.status >= 400 else 0
        latency_sum += row.counts.latency_us_sum
        latency_max = max(latency_max, row.counts.latency_us_max)
        by_protocol[row.group.protocol] += n
        by_status[str(row.group.status)] += n
        by_endpoint[row.group.endpoint] += n
        by_asset[row.group.asset] += n
        keys.add(row.group.api_key_id)
    return {
        "requests": requests,
        "errors": errors,
        "latency_avg_ms": round(latency_sum / requests / 1000, 3) if requests else 0.0,
        "latency_max_ms": round(latency_max / 1000, 3),
        "by_protocol": dict(sorted(by_protocol.items())),
        "by_status": dict(sorted(by_status.items())),
        "by_endpoint": dict(by_endpoint.most_common(10)),
        "top_assets": [{"asset": a, "requests": n} for a, n in by_asset.most_common(TOP_ASSETS)],
        "keys": len(keys),
    }


class UdpReportServer(DatagramServer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.envelopes = rt.envelopes("LRS")
        super().__init__(
            self.answer,
            small_error(self.envelopes, ENDPOINT, 500, "internal error; the failure was logged"),
            observe=lambda status, seconds: rt.metrics.observe("LRS", ENDPOINT, "udp", status, seconds),
            amplification=rt.settings.udp_amplification_factor,
        )

    async def answer(self, data: bytes) -> Reply:
        started = time.perf_counter()
        try:
            msg = decode_object(data, FIELDS, EXAMPLE)
            if msg.get("report") != "usage":
                raise BadDatagram(400, 'report must be "usage" (the one report served over UDP)')
            params = [(name, str(msg[name])) for name in FILTERS if msg.get(name) is not None]
        except BadDatagram as exc:
            return stranger_error(self.envelopes, ENDPOINT, exc.status, str(exc), self.budget(data))
        try:
            key, problem = await authenticate(self.rt.keys, msg.get("api_key"), "udp")
        except DatabaseUnavailable:
            return stranger_error(self.envelopes, ENDPOINT, 503, KEYS_UNAVAILABLE, self.budget(data))
        if problem is not None or key is None:
            return stranger_error(self.envelopes, ENDPOINT, 401, problem or "invalid API key", self.budget(data))

        def done(status: int, data: Any = None, error: str | None = None) -> Reply:
            self.rt.meter.record(key.id, ENDPOINT, "-", "udp", status, time.perf_counter() - started, billable=False)
            body = dumps(self.envelopes.build(ENDPOINT, status, data=data, error=error, api_key_id=key.id))
            return fit(self.envelopes, ENDPOINT, status, body, key.id, "narrow the filters, or use HTTP /reports/usage")

        try:
            reader = self.rt.report_reader
            filters = parse_filters(params, time.time(), reader.limits, reader.cursor_key, own_key(key))
        except ReportError as exc:
            return done(400, error=str(exc))
        except PermissionError:
            return done(403, error=not_yours(key))
        try:
            rows, missing = await gather(self.rt.cache, self.rt.report_reader, filters)
        except StatementTimeout:
            return done(503, error=report_too_slow(self.rt.report_reader.limits.timeout_s))
        summary = {
            "type": "usage_summary",
            "from": iso(filters.start),
            "to": iso(filters.end),
            "api_key_id": filters.api_key_id,
            **summarize(rows),
            "missing": list(missing),
        }
        return done(200, summary)
