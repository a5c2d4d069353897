"""SQLite backend: the embedded default, one file under BEAST_DATA_DIR."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from trinity_beast.domain.errors import StatementTimeout
from trinity_beast.stores.db.base import Database

_PROGRESS_EVERY = 10_000  # SQLite VM instructions between deadline checks (well under a millisecond)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._path = path
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so concurrent
        # processes on one file serialize writers instead of failing mid-way.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._in_tx = False

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
        try:
            cur = self._conn.execute(sql, params or {})
            rows = cur.fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":  # the progress handler's deadline (_set_deadline)
                raise StatementTimeout("statement ran past its time limit") from None
            raise
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

    def reopen(self) -> SqliteDatabase:
        """A second connection to the same file (WAL: it reads while the first one writes).
        An in-memory database exists only in its one connection: it is shared instead."""
        return self if str(self._path) == ":memory:" else SqliteDatabase(self._path)

    def _set_deadline(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self._conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_EVERY)

    def _clear_deadline(self) -> None:
        self._conn.set_progress_handler(None, 0)
