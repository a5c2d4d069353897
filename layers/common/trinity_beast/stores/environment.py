"""Settings from the process environment, at the edge where secrets are read.

`domain.settings.load_settings` only parses; this adds what needs I/O: the database URL from
Aurora's Secrets Manager secret (DATABASE_SECRET / DATABASE_SECRET_ARN) when DATABASE_URL is
not given.
"""

from __future__ import annotations

import os
from typing import Mapping

from trinity_beast.domain import settings
from trinity_beast.stores.db.secret import database_url_from


def load_settings(env: Mapping[str, str] | None = None) -> settings.Settings:
    """Every setting from `env` (default: os.environ); raises ConfigError naming a bad one."""
    env = os.environ if env is None else env
    if not env.get("DATABASE_URL", "").strip():
        url = database_url_from(env)
        if url is not None:
            env = {**env, "DATABASE_URL": url}
    return settings.load_settings(env)
