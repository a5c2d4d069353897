"""The database URL from a Secrets Manager secret (Aurora's credentials on AWS).

The one module that talks to Secrets Manager. On AWS the password never sits in a plain
environment variable or a template parameter: ECS injects the secret's JSON value into
`DATABASE_SECRET` (task definition `Secrets`), and Lambda functions get the secret's ARN in
`DATABASE_SECRET_ARN` and fetch it here with Powertools Parameters when a database
connection is opened (cached for DATABASE_SECRET_MAX_AGE_S, 300 s). Both end in the same
postgresql:// URL that `DATABASE_URL` would hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from trinity_beast.domain.setting_values import ConfigError


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
    overrides = {k: v.strip() for k, v in (overrides or {}).items() if v and v.strip()}
    # An RDS-managed master secret holds only username and password: DATABASE_HOST gives the host.
    required = ("username", "password") + (() if overrides.get("DATABASE_HOST") else ("host",))
    missing = [k for k in required if not isinstance(secret.get(k), str) or not secret[k]]
    if missing:
        raise ConfigError(f"{setting}: the secret has no {', '.join(missing)}")
    try:
        port = int(secret.get("port") or 5432)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting}: the secret's port is not a number: {secret.get('port')!r}") from None
    dbname = str(secret.get("dbname") or "postgres")
    sslmode = overrides.get("DATABASE_SSLMODE") or str(secret.get("sslmode") or "require")
    root = overrides.get("DATABASE_SSLROOTCERT") or str(secret.get("sslrootcert") or "")
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    host = overrides.get("DATABASE_HOST") or str(secret["host"])
    host = f"[{host}]" if ":" in host else host
    query = f"sslmode={quote(sslmode, safe='')}" + (f"&sslrootcert={quote(root, safe='/')}" if root else "")
    return f"postgresql://{user}:{password}@{host}:{port}/{quote(dbname, safe='')}?{query}"


OVERRIDES = ("DATABASE_HOST", "DATABASE_SSLMODE", "DATABASE_SSLROOTCERT")


SECRET_MAX_AGE_S = 300  # how long a read secret is trusted before it is read again (rotation)


def secret_max_age(env: Mapping[str, str]) -> int:
    raw = env.get("DATABASE_SECRET_MAX_AGE_S", "").strip()
    if not raw:
        return SECRET_MAX_AGE_S
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"DATABASE_SECRET_MAX_AGE_S: expected a whole number of seconds, at least 1, got {raw!r}")
    return int(raw)


def fetch_secret(arn: str, max_age: int = SECRET_MAX_AGE_S, setting: str = "DATABASE_SECRET_ARN") -> str:
    """The secret's string value, through Powertools Parameters: cached for `max_age` seconds,
    so a warm Lambda container asks once per period and picks up a rotated password."""
    try:
        from aws_lambda_powertools.utilities.parameters import get_secret
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise ConfigError(f"{setting}: reading a secret needs trinity-beast[aws] (Powertools, boto3)") from None
    try:
        value = get_secret(arn, max_age=max_age)
    except (GetParameterError, BotoCoreError) as exc:  # Powertools wraps the SDK's errors; making a client can fail too
        raise ConfigError(f"{setting}: cannot read secret {arn!r}: {' '.join(str(exc).split())}") from None
    if not isinstance(value, (str, bytes)):
        raise ConfigError(f"{setting}: secret {arn!r} has no string value")
    return value


def database_url_from(env: Mapping[str, str]) -> str | None:
    """DATABASE_SECRET (the injected JSON) or DATABASE_SECRET_ARN (fetched), else None."""
    injected = env.get("DATABASE_SECRET", "").strip()
    if injected:
        return url_from_secret(injected, "DATABASE_SECRET", {k: env.get(k, "") for k in OVERRIDES})
    arn = env.get("DATABASE_SECRET_ARN", "").strip()
    if arn:
        return url_from_secret(
            fetch_secret(arn, secret_max_age(env)), "DATABASE_SECRET_ARN", {k: env.get(k, "") for k in OVERRIDES}
        )
    return None


def redis_password_from(env: Mapping[str, str]) -> str | None:
    """REDIS_SECRET_ARN's `password` (MemoryDB's ACL user, on AWS Lambda), else None."""
    arn = env.get("REDIS_SECRET_ARN", "").strip()
    if not arn:
        return None
    try:
        secret: Any = orjson.loads(fetch_secret(arn, secret_max_age(env), "REDIS_SECRET_ARN"))
    except orjson.JSONDecodeError:
        raise ConfigError("REDIS_SECRET_ARN: expected the secret's JSON value with a password") from None
    password = secret.get("password") if isinstance(secret, dict) else None
    if not isinstance(password, str) or not password:
        raise ConfigError("REDIS_SECRET_ARN: the secret has no password")
    return password
