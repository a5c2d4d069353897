"""API Gateway REQUEST authorizer: the Bearer key's SHA-256 looked up in the database.

API Gateway caches each answer per Authorization header for the template's
`ReauthorizeEvery`, so a valid key costs one lookup per cache period and a call without a
valid key never reaches a function. The functions still apply the key rules themselves (tier,
quota): this only keeps unauthenticated traffic out. Because the cached answer serves every
route, an Allow covers the whole API stage, not just the method asked about.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.services.auth import KeyRing, credentials
from trinity_beast.stores.db import make_database
from trinity_beast.stores.environment import load_settings
from trinity_beast.transports.aws_lambda.api import logger

# API Gateway turns exactly this error message into its 401 (and caches nothing).
UNAUTHORIZED = "Unauthorized"

_keys: KeyRing | None = None


def keyring() -> KeyRing:
    """One database connection and key cache per warm container, opened on first use."""
    global _keys
    if _keys is None:
        settings = load_settings()
        db = make_database(settings)
        db.migrate()
        _keys = KeyRing(db, ttl=settings.key_cache_s)
    return _keys


def stage_arn(method_arn: str) -> str:
    """arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH -> .../API/STAGE/* (every route)."""
    head, _, rest = method_arn.partition("/")
    stage = rest.split("/", 1)[0]
    if not head.startswith("arn:") or head.split(":")[2:3] != ["execute-api"] or not stage:
        raise ValueError(f"not an execute-api method ARN: {method_arn!r}")
    return f"{head}/{stage}/*"


def policy(principal: str, effect: str, resource: str, context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }


@logger.inject_lambda_context
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("methodArn"), str):
        logger.warning("refused a malformed authorizer event")
        raise Exception(UNAUTHORIZED)
    try:
        resource = stage_arn(event["methodArn"])
    except ValueError as exc:
        logger.warning("refused a malformed authorizer event", extra={"why": str(exc)})
        raise Exception(UNAUTHORIZED) from None
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        raise Exception(UNAUTHORIZED)
    # The one key rule, header only: API Gateway caches by the Authorization header alone.
    given = credentials([(str(k), v) for k, v in headers.items() if isinstance(v, str)], None)
    if given.problem is not None or not given.secret:
        raise Exception(UNAUTHORIZED)
    key = keyring().lookup(given.secret)  # DatabaseUnavailable propagates: API Gateway answers 500, caches nothing
    if key is None or not key.active:
        raise Exception(UNAUTHORIZED)
    return policy(key.id, "Allow", resource, {"keyId": key.id, "tier": key.tier})
