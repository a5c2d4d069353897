"""The database contract: one SQL implementation, composed from one repository per concern.

Both backends (SQLite for the embedded default, PostgreSQL via pg8000 for production) run
the same SQL with `:name` parameters, which sqlite3 and pg8000.native both accept; a
backend only supplies how to execute a statement and how to hold a transaction. Both pass
tests/test_db_contract.py.

The SQL lives by concern in keys.py, partners.py (with audit.py), usage.py and schema.py
(migrations); `Database` mixes them together and holds the connection plumbing.

Calls block: async code runs them with asyncio.to_thread. A lock makes one connection
safe to share between threads.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trinity_beast.domain.errors import StatementTimeout
from trinity_beast.stores.db.deployment import DeploymentRows
from trinity_beast.stores.db.partners import PartnerRows
from trinity_beast.stores.db.schema import (
    SchemaMigrations,
    migration_files,
    split_statements,
)
from trinity_beast.stores.db.usage import GRAIN_SECONDS, UsageQuery, UsageRows

# UsageQuery and GRAIN_SECONDS are part of the contract's signatures (usage_totals, roll_up),
# and migration files are what migrate() applies: importable from here as before.
__all__ = ["GRAIN_SECONDS", "Database", "StatementTimeout", "UsageQuery", "migration_files", "split_statements"]


class Database(PartnerRows, UsageRows, DeploymentRows, SchemaMigrations, ABC):
    """Keys, partners and their audit, usage history and migrations over one connection.

    One connection, one lock: a slow statement holds every other caller of this object.
    Reports therefore read through their own object (`reopen`, services/reports/reader.py),
    so key lookups and price-path work never queue behind a report."""

    dialect: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- what a backend supplies -------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement; return (rows, affected row count)."""

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _begin_snapshot(self) -> None:
        """Start a read-only transaction whose reads all see one consistent state."""

    @abstractmethod
    def _lock_migrations(self) -> None:
        """Serialize concurrent migrators (inside the migration transaction)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def reopen(self) -> Database:
        """Another object, with its own connection and lock, on the same database."""

    @abstractmethod
    def _set_deadline(self, timeout_s: float) -> None:
        """Cancel statements of the current transaction that run past `timeout_s` (StatementTimeout)."""

    def _clear_deadline(self) -> None:
        """Undo `_set_deadline` (PostgreSQL's SET LOCAL ends with the transaction by itself)."""

    # --- shared machinery --------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._begin()
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._commit()

    @contextmanager
    def snapshot(self, timeout_s: float | None = None) -> Iterator[None]:
        """Several reads that must agree with each other (usage rows and the batch ledger);
        with `timeout_s`, a statement running longer is cancelled (StatementTimeout)."""
        with self._lock:
            self._begin_snapshot()
            try:
                if timeout_s is not None:
                    self._set_deadline(timeout_s)
                yield
            finally:
                if timeout_s is not None:
                    self._clear_deadline()
                self._rollback()

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._execute(sql, params)[0]

    def execute(self, sql: str, **params: Any) -> int:
        with self._lock:
            return self._execute(sql, params)[1]
