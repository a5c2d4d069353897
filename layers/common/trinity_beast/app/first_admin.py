"""The first admin key, made on a first start with no keys, and where it is shown.

Run locally, `beast serve` prints it once on stdout. On AWS the container's stdout is a
log group many people can read, so with BEAST_ADMIN_KEY_SECRET_ARN the key is written to
that Secrets Manager secret instead, and the log says only where it went. The key is stored
before it is made valid: if the secret cannot be written, start-up stops with one line and
no key exists, so the next start tries again instead of leaving a key nobody can read.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.settings import Settings
from trinity_beast.services.runtime import ensure_admin_key
from trinity_beast.stores.db import Database
from trinity_beast.transports.server import StartupError


def secrets_manager_keeper(secret_id: str) -> Callable[[ApiKey, str], None]:
    """Write {"api_key_id", "api_key"} into an existing Secrets Manager secret (PutSecretValue)."""

    def keep(key: ApiKey, secret: str) -> None:
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise StartupError("BEAST_ADMIN_KEY_SECRET_ARN: writing the key needs trinity-beast[aws] (boto3)") from None
        value = orjson.dumps({"api_key_id": key.id, "api_key": secret}).decode()
        try:
            boto3.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=value)
        except (BotoCoreError, ClientError) as exc:
            why = " ".join(str(exc).split())
            raise StartupError(
                f"BEAST_ADMIN_KEY_SECRET_ARN: cannot store the first admin key in {secret_id!r}: {why}; no key was created"
            ) from None

    return keep


def first_start(settings: Settings, db: Database) -> list[str]:
    """Make the first admin key if there is none; the lines to print about it (never the key
    when it went to Secrets Manager)."""
    arn = settings.admin_key_secret_arn
    created = ensure_admin_key(db, secrets_manager_keeper(arn) if arn else None)
    if created is None:
        return []
    key, secret = created
    if arn:
        return [
            f"First start: created an admin key ({key.id}) and stored it in Secrets Manager secret {arn}.",
            f"  read it: aws secretsmanager get-secret-value --secret-id {arn} --query SecretString --output text",
        ]
    return [
        "First start: created an admin key. It is shown once; keep it somewhere safe.",
        f"  id:  {key.id}",
        f"  key: {secret}",
        f'  try: curl -H "Authorization: Bearer {secret}" "http://{settings.host}:{settings.lpo_port}/price?asset=BTC"',
    ]
