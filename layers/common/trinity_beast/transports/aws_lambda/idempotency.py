"""`POST /partners` once only, with Powertools idempotency over DynamoDB (IDEMPOTENCY_TABLE).

Creating a partner makes a key and may touch EC2: a client (or API Gateway) that retries a
create whose answer it lost must get that answer back, not a second partner. Two requests
are the same when the same caller (a hash of its key) sends the same `Idempotency-Key`
header (with a different body: 422), or, without that header, the same body. Only successful answers are kept: a
refusal or a 503 is answered again, not replayed. Records expire after
EXPIRES_S (600 s): long enough for retries, short because a kept answer holds
the new partner's API key (DynamoDB encrypts it at rest; the table needs TTL on `expiration`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from trinity_beast.transports.aws_lambda.api import AsgiFunction, json_response, logger

ROUTE = ("POST", "/partners")
EXPIRES_S = 600


class NotKept(Exception):
    """An answer that must not be replayed (not 2xx): raised through Powertools so it keeps nothing."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response["statusCode"])
        self.response = response


def request_identity(event: dict[str, Any]) -> dict[str, str]:
    """The caller (a hash of its key), its Idempotency-Key (or ""), and the body.

    The record's key is (caller, Idempotency-Key), or (caller, body) without the header
    (KEY_PATH); the body is also checked against the kept record (VALIDATION_PATH), so an
    Idempotency-Key reused for a different create is refused rather than answered with the
    first partner.
    """
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if isinstance(v, str)}
    query = event.get("queryStringParameters") or {}
    caller = headers.get("authorization") or str(query.get("api_key") or "")
    return {
        "caller": hashlib.sha256(caller.encode()).hexdigest(),
        "key": headers.get("idempotency-key", "").strip(),
        "body": event.get("body") or "",
    }


KEY_PATH = "[caller, key || body]"
VALIDATION_PATH = "body"


class OnceOnly:
    """Wraps an API handler so that ROUTE is answered once per request identity."""

    def __init__(self, function: AsgiFunction) -> None:
        self._function = function
        self._once: Callable[..., dict[str, Any]] | None = None
        self._config: Any = None

    @staticmethod
    def applies(event: dict[str, Any]) -> bool:
        return (event["httpMethod"].upper(), event["path"].rstrip("/") or "/") == ROUTE and bool(
            os.environ.get("IDEMPOTENCY_TABLE", "").strip()
        )

    def _build(self) -> Callable[..., dict[str, Any]]:
        if self._once is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            self._config = IdempotencyConfig(
                event_key_jmespath=KEY_PATH,
                payload_validation_jmespath=VALIDATION_PATH,
                expires_after_seconds=EXPIRES_S,
            )
            store = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"].strip())
            answer = self._function.answer  # counted once, by the caller

            @idempotent_function(data_keyword_argument="request", persistence_store=store, config=self._config)  # type: ignore[untyped-decorator]  # Powertools types it as returning Any
            def create_partner(request: dict[str, str], event: dict[str, Any], context: Any) -> dict[str, Any]:
                response = answer(event, context)
                if not 200 <= response["statusCode"] < 300:
                    raise NotKept(response)
                return response

            self._once = create_partner
        return self._once

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        once = self._build()
        if hasattr(context, "get_remaining_time_in_millis"):
            self._config.register_lambda_context(context)
        try:
            return once(request=request_identity(event), event=event, context=context)
        except NotKept as kept:
            return kept.response
        except IdempotencyValidationError:
            return self._refuse(event, 422, "this Idempotency-Key was used for a different create; use a new key")
        except IdempotencyAlreadyInProgressError:
            return self._refuse(event, 409, "the same create is still in progress; retry in a few seconds")
        except IdempotencyPersistenceLayerError as exc:
            logger.error("idempotency store unavailable", extra={"why": " ".join(str(exc).split())})
            return self._refuse(event, 503, "cannot check for a repeated create right now; retry shortly")

    def _refuse(self, event: dict[str, Any], status: int, message: str) -> dict[str, Any]:
        return json_response(self._function.envelopes.error(event["path"], status, message), {"Retry-After": "5"})
