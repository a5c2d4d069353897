"""The database URL from a Secrets Manager secret (Aurora's credentials on AWS).

The one module that talks to Secrets Manager. On AWS the password never sits in a plain
environment variable or a template parameter: ECS injects the secret's JSON value into
`DATABASE_SECRET` (task definition `Secrets`), and Lambda functions get the secret's ARN in
`DATABASE_SECRET_ARN` and fetch it here with boto3 once per process. Both end in the same
postgresql:// URL that `DATABASE_URL` would hold.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping
from urllib.parse import quote

import orjson

from .config import ConfigError


def url_from_secret(value: str | bytes, setting: str, overrides: Mapping[str, str] | None = None) -> str:
    """A postgresql:// URL from an RDS-style secret: username, password, host, port, dbname.

    TLS is on (`sslmode=require`) unless the secret says otherwise (`sslmode`, `sslrootcert`,
    libpq's meanings, see db/pgtls.py). `overrides` (DATABASE_HOST, DATABASE_SSLMODE,
    DATABASE_SSLROOTCERT from the environment) win over the secret: RDS rotates the secret
    with the cluster's own host, while the functions connect through an RDS Proxy endpoint
    with sslmode=verify-full.
    """
    try:
        secret: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{setting}: expected the secret's JSON value, got something else") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"{setting}: expected a JSON object with username, password, host")
    missing = [k for k in ("username", "password", "host") if not isinstance(secret.get(k), str) or not secret[k]]
    if missing:
        raise ConfigError(f"{setting}: the secret has no {', '.join(missing)}")
    try:
        port = int(secret.get("port") or 5432)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting}: the secret's port is not a number: {secret.get('port')!r}") from None
    overrides = {k: v.strip() for k, v in (overrides or {}).items() if v and v.strip()}
    dbname = str(secret.get("dbname") or "postgres")
    sslmode = overrides.get("DATABASE_SSLMODE") or str(secret.get("sslmode") or "require")
    root = overrides.get("DATABASE_SSLROOTCERT") or str(secret.get("sslrootcert") or "")
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    host = overrides.get("DATABASE_HOST") or secret["host"]
    host = f"[{host}]" if ":" in host else host
    query = f"sslmode={quote(sslmode, safe='')}" + (f"&sslrootcert={quote(root, safe='/')}" if root else "")
    return f"postgresql://{user}:{password}@{host}:{port}/{quote(dbname, safe='')}?{query}"


OVERRIDES = ("DATABASE_HOST", "DATABASE_SSLMODE", "DATABASE_SSLROOTCERT")


@functools.lru_cache(maxsize=4)
def fetch_secret(arn: str) -> str:
    """The secret's string value; cached, so a warm Lambda container asks once."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise ConfigError(f"DATABASE_SECRET_ARN: cannot read secret {arn!r}: {exc}") from None


def database_url_from(env: Mapping[str, str]) -> str | None:
    """DATABASE_SECRET (the injected JSON) or DATABASE_SECRET_ARN (fetched), else None."""
    injected = env.get("DATABASE_SECRET", "").strip()
    if injected:
        return url_from_secret(injected, "DATABASE_SECRET", {k: env.get(k, "") for k in OVERRIDES})
    arn = env.get("DATABASE_SECRET_ARN", "").strip()
    if arn:
        return url_from_secret(fetch_secret(arn), "DATABASE_SECRET_ARN", {k: env.get(k, "") for k in OVERRIDES})
    return None
