"""Start-up and CLI failures as one line a newcomer can act on.

Every failure before `beast` serves (or while a CLI command runs) names the setting or the
cause and says what to do, on one line, with exit code 2 — never a traceback. The checks
here run before anything is created, so a bad BEAST_HOST does not leave a first admin key
behind that nobody saw working.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Mapping

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import Settings
from trinity_beast.stores.cache.base import CacheUnavailable
from trinity_beast.transports.server import StartupError

EXIT_FAILURE = 2  # a start-up or command failure, as for an invalid setting


def database_setting(env: Mapping[str, str] | None = None) -> str:
    """The setting the database came from, so an error can name it."""
    env = os.environ if env is None else env
    for name in ("DATABASE_URL", "DATABASE_SECRET", "DATABASE_SECRET_ARN"):
        if env.get(name, "").strip():
            return name
    return "BEAST_DATA_DIR"


def check_host(host: str) -> None:
    """BEAST_HOST must be an address of this machine (or a name resolving to one)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise StartupError(
            f"BEAST_HOST: cannot listen on {host!r}: {why}; set BEAST_HOST to an address of this machine"
            " (127.0.0.1, or 0.0.0.0 for every interface)"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind((address[0], 0))
        except OSError as exc:
            raise StartupError(
                f"BEAST_HOST: cannot listen on {host} ({exc.strerror}): not an address of this machine;"
                " set BEAST_HOST to an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None


def check_sqlite(settings: Settings) -> None:
    """The embedded database's file can be created and written (BEAST_DATA_DIR, or a sqlite:// URL)."""
    url = settings.database_url
    if url and not url.startswith("sqlite:"):
        return
    setting = "DATABASE_URL" if url else "BEAST_DATA_DIR"
    path = url.removeprefix("sqlite://").removeprefix("/") if url else str(settings.sqlite_path)
    if path == ":memory:":
        return
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        with sqlite3.connect(path, timeout=30) as conn:
            conn.execute("PRAGMA user_version")  # opens (creates) the file
        if not os.access(path, os.W_OK) or not os.access(folder, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except (OSError, sqlite3.Error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = "a directory beast may write (default ./data)" if not url else "a file in a writable directory"
        raise ConfigError(
            f"{setting}: cannot write the SQLite database {path}: {why}; set {setting} to {hint}"
        ) from None


def one_line(exc: BaseException) -> str:
    """The failure as `beast: …` on one line, naming the setting and what to do."""
    text = " ".join(str(exc).split()).rstrip(".")
    if isinstance(exc, CacheUnavailable):
        return f"beast: REDIS_URL: cannot reach Redis: {text}; check that Redis is running and REDIS_URL points at it"
    if isinstance(exc, DatabaseUnavailable):
        setting = database_setting()
        if setting == "BEAST_DATA_DIR":
            return f"beast: {text}"
        return f"beast: {setting}: {text}; check that the database is running and {setting} points at it"
    return f"beast: {text}"
