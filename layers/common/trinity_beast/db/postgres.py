"""PostgreSQL backend (Aurora in production) through pg8000's native interface."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native

from .base import Database

_MIGRATION_LOCK_ID = 0x7B3A57  # pg_advisory_xact_lock key shared by every migrator


def connect_args(url: str) -> dict[str, Any]:
    """pg8000 connect arguments from a postgresql:// URL."""
    parts = urlsplit(url)
    args: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or "postgres",
        "timeout": 10,
    }
    if parts.password:
        args["password"] = unquote(parts.password)
    query = parse_qs(parts.query)
    if query.get("sslmode", ["disable"])[0] in ("require", "verify-ca", "verify-full"):
        import ssl

        args["ssl_context"] = ssl.create_default_context()
    return args


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._conn = pg8000.native.Connection(**connect_args(url))

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple], int]:
        rows = self._conn.run(sql, **(params or {}))
        return [tuple(r) for r in rows or []], self._conn.row_count

    def _begin(self) -> None:
        self._conn.run("START TRANSACTION")

    def _commit(self) -> None:
        self._conn.run("COMMIT")

    def _rollback(self) -> None:
        self._conn.run("ROLLBACK")

    def _begin_snapshot(self) -> None:
        self._conn.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _lock_migrations(self) -> None:
        self._conn.run("SELECT pg_advisory_xact_lock(:id)", id=_MIGRATION_LOCK_ID)

    def close(self) -> None:
        self._conn.close()
