"""What every HTTP app shares: envelopes as responses, framework errors as envelopes, the key
of a request, and GET /usage/me (served by both the LPO and the LRS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.services.auth import Credentials, secret_from
from trinity_beast.services.reports.answers import Answer, answer_usage_me

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime


def envelope_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=body["status_code"], media_type="application/json", headers=headers)


def install_error_handlers(app: FastAPI, envelopes: Envelopes) -> None:
    """Every framework error (404, 405, validation) answers as a UME, never `{"detail": …}`."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        if status == 404:
            message = f"unknown path {request.url.path}"
        elif status == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return envelope_response(envelopes.error(request.url.path, status, message), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('query', 'body'))}: {e.get('msg')}"
            for e in exc.errors()
        )
        return envelope_response(envelopes.error(request.url.path, 400, f"bad request: {problems}"))

    @app.exception_handler(DatabaseUnavailable)
    async def database_down(request: Request, exc: DatabaseUnavailable) -> Response:
        message = "the database is unreachable; retry shortly"
        return envelope_response(envelopes.error(request.url.path, 503, message), headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:  # logged by the server as well
        return envelope_response(envelopes.error(request.url.path, 500, "internal error; the failure was logged"))


def to_response(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=answer.headers)


def request_secret(request: Request) -> Credentials:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    return secret_from(headers, request.query_params.multi_items())


def add_usage_me(api: FastAPI, rt: Runtime, envelopes: Envelopes) -> None:
    """GET /usage/me on any of our FastAPI apps (LPO and LRS)."""

    @api.get("/usage/me", summary="This key's plan, usage this month, what remains and when it resets")
    async def usage_me(request: Request) -> Response:
        return to_response(await answer_usage_me(rt, request_secret(request), envelopes))
