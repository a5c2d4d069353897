"""The LRS HTTP server (BEAST_LRS_PORT, 9090): usage reports and a key's own usage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response

from trinity_beast.services.reports.answers import answer_report
from trinity_beast.services.reports.filters import FORMATS, GRANULARITIES, MAX_LIMIT
from trinity_beast.transports.http.admin import add_command_center
from trinity_beast.transports.http.common import (
    add_usage_me,
    envelope_response,
    install_error_handlers,
    request_secret,
    to_response,
)
from trinity_beast.transports.http.docs_ui import add_docs
from trinity_beast.transports.http.keyfirst import KeyBeforeBody
from trinity_beast.transports.http.openapi import install_openapi, lrs_paths
from trinity_beast.transports.http.ops import Instrument, add_ops_routes, route_paths

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime


def build_lrs(rt: Runtime) -> FastAPI:
    envelopes = rt.envelopes("LRS")
    api = FastAPI(title="Trinity Beast LRS", version="0.1.0", docs_url=None, redoc_url=None)
    install_error_handlers(api, envelopes)
    add_docs(api, envelopes)
    add_usage_me(api, rt, envelopes)

    add_command_center(api, rt, envelopes)

    @api.get(
        "/reports/usage",
        summary=(
            f"Usage report: format={'|'.join(FORMATS)}, granularity={'|'.join(GRANULARITIES)}, "
            f"from, to, api_key_id, endpoint, asset, protocol, status, limit (1-{MAX_LIMIT}), cursor"
        ),
    )
    async def usage_report(request: Request) -> Response:
        answer = await answer_report(rt, request_secret(request), request.query_params.multi_items(), envelopes)
        return to_response(answer)

    @api.get("/health", summary="Liveness (no key)")
    async def health() -> Response:
        data = {"status": "ok", "uptime_s": round(time.time() - rt.started_at, 1), **rt.health()}
        return envelope_response(envelopes.ok("/health", data))

    add_ops_routes(api, rt, envelopes, "LRS")
    api.add_middleware(KeyBeforeBody, rt=rt, envelopes=envelopes)
    api.add_middleware(Instrument, metrics=rt.metrics, service="LRS", known=lambda: route_paths(api))
    api.state.envelopes = envelopes  # for refusals made below the app (serving.LimitedHttp)
    install_openapi(api, lrs_paths())
    return api
