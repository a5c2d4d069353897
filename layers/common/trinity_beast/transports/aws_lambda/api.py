"""What every Lambda function shares, done the Powertools way.

- `logger`, `metrics`, `tracer`: one of each per process. The library's own log lines
  (`trinity_beast.*`: prewarm results, sync) go out through the Powertools logger
  (`copy_config_to_registered_loggers`), so they reach the function's log group as JSON
  with the request id, like the handler's own lines.
- `AsgiFunction`: the reports and partners functions serve the container's FastAPI LRS app
  through Mangum, so each route is written once. The app, the stores and the database
  secret are built at the first request, not at import: a Secrets Manager blip is then an
  answered 503 and retried on the next request, never an init failure.
- `make_resolver`/`handle`: the assets function, which needs no stores, on the Powertools
  resolver.

Imports that cost (FastAPI, Mangum, the LRS) happen at the first request (see
bench/lambda_import.py for the numbers).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from trinity_beast.domain import settings as domain_settings
from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import Settings
from trinity_beast.stores.environment import load_settings
from trinity_beast.transports.redact import RedactSecrets

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

    from trinity_beast.services.runtime import Runtime
    from trinity_beast.stores.db import Database

T = TypeVar("T")
SERVICE = "trinity-beast"
logger = Logger(service=SERVICE)
# CloudWatch embedded-metric-format lines on stdout: no AWS call, CloudWatch Logs extracts them.
metrics = Metrics(namespace="TrinityBeast", service=SERVICE)


PATCHED = (
    "botocore",
    "httpx",
    "pg8000",
)  # what the functions call out with; patching all X-Ray knows costs twice the time


class LazyTracer:
    """Powertools' Tracer, made at the first invocation rather than at import.

    An enabled Tracer imports the X-Ray SDK, which imports botocore and patches every library
    it knows (most of the import time of a handler, see bench/lambda_import.py); made at the
    first invocation it costs nothing to a container that is never invoked and is off
    outside Lambda. X-Ray segments appear when the function has `Tracing: Active`.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Tracer | None = None

    def get(self) -> Tracer:
        if self._tracer is None:
            self._tracer = Tracer(service=self._service, patch_modules=PATCHED)
        return self._tracer

    def capture_lambda_handler(
        self, handler: Callable[..., Any] | None = None, *, capture_response: bool = False
    ) -> Callable[..., Any]:
        """Tracer.capture_lambda_handler; responses are not captured by default (they carry API keys)."""
        if handler is None:
            return functools.partial(self.capture_lambda_handler, capture_response=capture_response)
        traced: Callable[..., Any] | None = None

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            nonlocal traced
            if traced is None:
                traced = self.get().capture_lambda_handler(handler, capture_response=capture_response)
            return traced(event, context)

        return run


tracer = LazyTracer(SERVICE)
logger.registered_handler.addFilter(RedactSecrets())  # as every handler of `beast serve` (redact.py)
logging.getLogger("trinity_beast")  # registered now, so the copy below reaches every trinity_beast.* logger
copy_config_to_registered_loggers(source_logger=logger, include={"trinity_beast"})

SECRET_SETTINGS = ("DATABASE_SECRET", "DATABASE_SECRET_ARN")


def envelope_settings() -> Settings:
    """The settings an envelope needs (region, node, address), read without touching Secrets Manager."""
    return domain_settings.load_settings({k: v for k, v in os.environ.items() if k not in SECRET_SETTINGS})


def json_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A UME body as an API Gateway proxy response, for answers given before any app runs."""
    return {
        "statusCode": body["status_code"],
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": dumps(body).decode(),
    }


def refusal(event: Any, *, asgi: bool = False) -> str | None:
    """Why `event` is not an API Gateway (REST) proxy event; None if it is one."""
    if not isinstance(event, dict):
        return "expected an API Gateway proxy event object"
    for name in ("httpMethod", "path"):
        if not isinstance(event.get(name), str):
            return f"missing or non-string {name!r}"
    for name in (
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
    ):
        if event.get(name) is not None and not isinstance(event[name], dict):
            return f"{name!r} must be an object or null"
    if asgi and not isinstance(event.get("requestContext"), dict):
        return "missing or non-object 'requestContext'"
    if asgi and not isinstance(event.get("resource"), str):
        return "missing or non-string 'resource'"
    if event.get("body") is not None and not isinstance(event["body"], str):
        return "'body' must be a string or null"
    return None


def malformed(envelopes: Envelopes, why: str) -> dict[str, Any]:
    return json_response(envelopes.error("-", 400, f"malformed event: {why}"))


def count_response(response: dict[str, Any], context: Any) -> dict[str, Any]:
    """Count an API answer by status class, per function."""
    metrics.add_dimension(name="function", value=str(getattr(context, "function_name", "unknown")))
    metrics.add_metric(name="Responses", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Responses{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
    return response


def secret_database_url() -> str:
    """The database URL from the secret by ARN, as of now (Powertools-cached, see stores/db/secret.py)."""
    from trinity_beast.stores.db.secret import database_url_from

    return database_url_from(os.environ) or ""


class LambdaRuntime:
    """One Runtime and one event loop per warm Lambda container.

    Built on first use (settings come from the function's environment) and kept across
    invocations: the database connection and Redis pool are reused, and redis.asyncio pools
    belong to one loop. A failed build (the secret unreadable, the database down) is
    retried at the next invocation. With the database secret read by ARN, every new
    database connection looks the secret up again (cached for DATABASE_SECRET_MAX_AGE_S),
    so a rotated password is picked up when the old connection goes. Every invocation ends
    by flushing usage, since a frozen container may never run again.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._rt: Runtime | None = None

    @property
    def started(self) -> bool:
        return self._rt is not None

    def runtime(self) -> Runtime:
        if self._rt is None:
            from trinity_beast.services.runtime import Runtime

            settings = load_settings()
            self._rt = Runtime.create(settings, db=self._database(settings))
        return self._rt

    @staticmethod
    def _database(settings: Settings) -> Database | None:
        """A PostgreSQL whose credentials follow the secret, when they come from one by ARN."""
        if os.environ.get("DATABASE_URL", "").strip() or not os.environ.get("DATABASE_SECRET_ARN", "").strip():
            return None  # Runtime.create opens what settings name
        from trinity_beast.stores.db.postgres import PostgresDatabase

        return PostgresDatabase(secret_database_url)

    def run(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        rt = self.runtime()

        async def invocation() -> T:
            try:
                return await work(rt)
            finally:
                await rt.meter.flush()

        return self.loop.run_until_complete(invocation())

    def serve(
        self, adapter: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any], context: Any
    ) -> dict[str, Any]:
        """Run a Mangum adapter on this container's loop (Mangum uses the current loop), then flush usage."""
        rt = self.runtime()
        asyncio.set_event_loop(self.loop)
        try:
            return adapter(event, context)
        finally:
            self.loop.run_until_complete(rt.meter.flush())


class AsgiFunction:
    """An API Gateway (REST proxy) handler serving an ASGI app that `build` makes from the Runtime.

    Everything is built at the first well-formed event; until that succeeds each event gets
    a UME 503 saying why (one line), and the next one tries again.
    """

    def __init__(self, build: Callable[[Runtime], Any], service: str = "LRS", profile: str | None = None) -> None:
        self._build = build
        self._service = service
        self._profile = profile  # the agent profile kind of answers given before the app runs
        self._envelopes: Envelopes | None = None
        self.runtime = LambdaRuntime()
        self._adapter: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    @property
    def envelopes(self) -> Envelopes:
        if self._envelopes is None:
            self._envelopes = Envelopes.for_service(envelope_settings(), self._service, self._profile)
        return self._envelopes

    def adapter(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        if self._adapter is None:
            from mangum import Mangum

            app = self._build(self.runtime.runtime())
            asyncio.set_event_loop(self.runtime.loop)  # Mangum adopts the current loop
            self._adapter = Mangum(app, lifespan="off")
        return self._adapter

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        return count_response(self.answer(event, context), context)

    def answer(self, event: Any, context: Any) -> dict[str, Any]:
        why = refusal(event, asgi=True)
        if why is not None:
            return malformed(self.envelopes, why)
        try:
            adapter = self.adapter()
        except (ConfigError, DatabaseUnavailable) as exc:
            logger.error("cannot start serving; the next request tries again", extra={"why": str(exc)})
            body = self.envelopes.error(event["path"], 503, f"service unavailable: {exc}")
            return json_response(body, {"Retry-After": "5"})
        return self.runtime.serve(adapter, event, context)


# --- the assets function: no stores, the Powertools resolver ------------------------------------


def envelope_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[str]:
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=body["status_code"], content_type="application/json", body=dumps(body).decode(), headers=headers
    )


def make_resolver(service: str) -> tuple[APIGatewayRestResolver, Envelopes]:
    """A resolver whose answers carry `service`'s tag: that of the server the routes belong to
    (envelope.SERVICE_PROFILES), never one of the function's own."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.exceptions import NotFoundError

    app = APIGatewayRestResolver()
    envelopes = Envelopes.for_service(envelope_settings(), service)

    @app.not_found
    def not_found(exc: NotFoundError) -> Response[str]:
        path = app.current_event.path
        return envelope_response(envelopes.error(path, 404, f"unknown path {path}"))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools leaves exception_handler unannotated
    def failed(exc: Exception) -> Response[str]:
        logger.exception("request failed")
        path = app.current_event.path
        return envelope_response(envelopes.error(path, 500, "internal error; the failure was logged"))

    return app, envelopes


def handle(app: APIGatewayRestResolver, envelopes: Envelopes, event: Any, context: Any) -> dict[str, Any]:
    """Resolve an API Gateway proxy event (counting answers by status class); refuse anything that is not one."""
    why = refusal(event)
    response = malformed(envelopes, why) if why is not None else app.resolve(event, context)
    return count_response(response, context)
