"""SQLite backend: the embedded default, one file under BEAST_DATA_DIR."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from trinity_beast.stores.db.base import Database


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so concurrent
        # processes on one file serialize writers instead of failing mid-way.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._in_tx = False

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple], int]:
        cur = self._conn.execute(sql, params or {})
        rows = cur.fetchall()
        return rows, cur.rowcount

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def _begin_snapshot(self) -> None:
        self._conn.execute("BEGIN")  # deferred: in WAL mode its reads share one snapshot

    def _lock_migrations(self) -> None:
        pass  # BEGIN IMMEDIATE already holds the write lock

    def close(self) -> None:
        self._conn.close()
