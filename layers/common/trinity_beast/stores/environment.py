"""Settings from the process environment, at the edge where secrets are read.

`domain.settings.load_settings` only parses; this adds what needs I/O: the database URL from
Aurora's Secrets Manager secret (DATABASE_SECRET / DATABASE_SECRET_ARN) when DATABASE_URL is
not given, the cache password from REDIS_SECRET_ARN when REDIS_PASSWORD is not, and the database
URL's TLS options checked (sslmode, sslrootcert) before anything connects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from trinity_beast.domain import settings
from trinity_beast.stores.db.pgtls import tls_options
from trinity_beast.stores.db.secret import database_url_from, redis_password_from


def load_settings(env: Mapping[str, str] | None = None) -> settings.Settings:
    """Every setting from `env` (default: os.environ); raises ConfigError naming a bad one."""
    env = os.environ if env is None else env
    given = bool(env.get("DATABASE_URL", "").strip())
    if not given:
        url = database_url_from(env)
        if url is not None:
            env = {**env, "DATABASE_URL": url}
    if not env.get("REDIS_PASSWORD", "").strip():
        password = redis_password_from(env)
        if password is not None:
            env = {**env, "REDIS_PASSWORD": password}
    loaded = settings.load_settings(env)
    if loaded.database_url and loaded.database_url.startswith(("postgresql://", "postgres://")):
        tls_options(loaded.database_url, "DATABASE_URL" if given else "DATABASE_SECRET")  # a bad sslmode, named
    return loaded
