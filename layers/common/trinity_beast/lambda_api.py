"""What every API Gateway Lambda handler shares: envelopes, UME errors, event checks.

Handlers stay thin: they declare routes on the resolver from `make_resolver` and hand the
event to `handle`, which turns a malformed event or an unexpected failure into a UME error
response instead of a stack trace.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from .config import load_settings
from .envelope import Envelopes, dumps

logger = Logger(service="trinity-beast")


def envelope_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=body["status_code"], content_type="application/json", body=dumps(body).decode(), headers=headers
    )


def make_resolver(service: str = "LAMBDA") -> tuple[APIGatewayRestResolver, Envelopes]:
    app = APIGatewayRestResolver()
    envelopes = Envelopes.for_service(load_settings(), service)

    @app.not_found
    def not_found(exc: NotFoundError) -> Response:
        path = app.current_event.path
        return envelope_response(envelopes.error(path, 404, f"unknown path {path}"))

    @app.exception_handler(Exception)
    def failed(exc: Exception) -> Response:
        logger.exception("request failed")
        path = app.current_event.path
        return envelope_response(envelopes.error(path, 500, "internal error; the failure was logged"))

    return app, envelopes


def malformed(envelopes: Envelopes, why: str) -> dict[str, Any]:
    body = envelopes.error("-", 400, f"malformed event: {why}")
    return {"statusCode": 400, "headers": {"Content-Type": "application/json"}, "body": dumps(body).decode()}


def handle(app: APIGatewayRestResolver, envelopes: Envelopes, event: Any, context: Any) -> dict[str, Any]:
    """Resolve an API Gateway proxy event; refuse anything that is not one with a UME 400."""
    if not isinstance(event, dict):
        return malformed(envelopes, "expected an API Gateway proxy event object")
    for field in ("httpMethod", "path"):
        if not isinstance(event.get(field), str):
            return malformed(envelopes, f"missing or non-string {field!r}")
    for field in ("headers", "queryStringParameters", "multiValueQueryStringParameters", "pathParameters"):
        if event.get(field) is not None and not isinstance(event[field], dict):
            return malformed(envelopes, f"{field!r} must be an object or null")
    return app.resolve(event, context)
