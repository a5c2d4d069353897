"""What every API Gateway Lambda handler shares: envelopes, UME errors, event checks.

Handlers stay thin: they declare routes on the resolver from `make_resolver` and hand the
event to `handle`, which turns a malformed event or an unexpected failure into a UME error
response instead of a stack trace.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from trinity_beast.stores.environment import load_settings
from trinity_beast.domain.envelope import Envelopes, dumps

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

T = TypeVar("T")
logger = Logger(service="trinity-beast")
# CloudWatch embedded-metric-format lines on stdout: no AWS call, CloudWatch Logs extracts them.
metrics = Metrics(namespace="TrinityBeast", service="trinity-beast")


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


class LambdaRuntime:
    """One Runtime and one event loop per warm Lambda container.

    Built on first use (settings come from the function's environment) and kept across
    invocations: the database connection and Redis pool are reused, and redis.asyncio pools
    belong to one loop. Every invocation ends by flushing usage, since a frozen container
    may never run again.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rt: "Runtime | None" = None

    def run(self, work: Callable[["Runtime"], Awaitable[T]]) -> T:
        from trinity_beast.services.runtime import Runtime

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._rt is None:
            self._rt = Runtime.create(load_settings())
        rt = self._rt

        async def invocation() -> T:
            try:
                return await work(rt)
            finally:
                await rt.meter.flush()

        return self._loop.run_until_complete(invocation())


def query_pairs(event: BaseProxyEvent) -> list[tuple[str, str]]:
    """Every query parameter as (name, value), repeated ones included."""
    multi = event.multi_value_query_string_parameters or {}
    if multi:
        return [(name, value) for name, values in multi.items() for value in values]
    return list((event.query_string_parameters or {}).items())


def header_pairs(event: BaseProxyEvent) -> list[tuple[str, str]]:
    return [(name.lower(), value) for name, value in (event.headers or {}).items()]


def answer_response(answer: Any) -> Response:
    """An lrs.answers.Answer as an API Gateway response."""
    return Response(
        status_code=answer.status, content_type=answer.content_type, body=answer.body.decode(), headers=answer.headers
    )


def malformed(envelopes: Envelopes, why: str) -> dict[str, Any]:
    body = envelopes.error("-", 400, f"malformed event: {why}")
    return {"statusCode": 400, "headers": {"Content-Type": "application/json"}, "body": dumps(body).decode()}


def handle(app: APIGatewayRestResolver, envelopes: Envelopes, event: Any, context: Any) -> dict[str, Any]:
    """Resolve an API Gateway proxy event (counting answers by status class); refuse anything that is not one."""
    metrics.add_dimension(name="function", value=str(getattr(context, "function_name", "unknown")))
    response = _resolve(app, envelopes, event, context)
    metrics.add_metric(name="Responses", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Responses{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
    return response


def _resolve(app: APIGatewayRestResolver, envelopes: Envelopes, event: Any, context: Any) -> dict[str, Any]:
    """Refuse anything that is not an API Gateway proxy event with a UME 400."""
    if not isinstance(event, dict):
        return malformed(envelopes, "expected an API Gateway proxy event object")
    for field in ("httpMethod", "path"):
        if not isinstance(event.get(field), str):
            return malformed(envelopes, f"missing or non-string {field!r}")
    for field in ("headers", "queryStringParameters", "multiValueQueryStringParameters", "pathParameters"):
        if event.get(field) is not None and not isinstance(event[field], dict):
            return malformed(envelopes, f"{field!r} must be an object or null")
    return app.resolve(event, context)
