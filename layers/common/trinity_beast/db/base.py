"""The database contract and its one SQL implementation.

Both backends (SQLite for the embedded default, PostgreSQL via pg8000 for production) run
the same SQL with `:name` parameters, which sqlite3 and pg8000.native both accept; a
backend only supplies how to execute a statement and how to hold a transaction. Both pass
tests/test_db_contract.py.

Calls block: async code runs them with asyncio.to_thread. A lock makes one connection
safe to share between threads.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from importlib import resources
from typing import Any, Iterator, Sequence

from ..keys import ApiKey

_KEY_COLUMNS = "id, name, tier, monthly_limit, secret_hash, created_at, revoked_at"


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped in db/migrations, in order."""
    out = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (our own files: no `;` inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        tier=row[2],
        monthly_limit=int(row[3]),
        secret_hash=row[4],
        created_at=float(row[5]),
        revoked_at=None if row[6] is None else float(row[6]),
    )


class Database(ABC):
    dialect: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- what a backend supplies -------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple], int]:
        """Run one statement; return (rows, affected row count)."""

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _lock_migrations(self) -> None:
        """Serialize concurrent migrators (inside the migration transaction)."""

    @abstractmethod
    def close(self) -> None: ...

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

    def query(self, sql: str, **params: Any) -> list[tuple]:
        with self._lock:
            return self._execute(sql, params)[0]

    def execute(self, sql: str, **params: Any) -> int:
        with self._lock:
            return self._execute(sql, params)[1]

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied; return their names. Safe to run concurrently."""
        applied_now: list[str] = []
        with self.transaction():
            self._lock_migrations()
            self._execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {int(r[0]) for r in self._execute("SELECT version FROM schema_migrations")[0]}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                for statement in split_statements(sql):
                    self._execute(statement)
                self._execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (:v, :n)", {"v": version, "n": name}
                )
                applied_now.append(name)
        return applied_now

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM schema_migrations ORDER BY version")]

    # --- keys --------------------------------------------------------------------------
    def insert_key(self, key: ApiKey) -> None:
        with self.transaction():
            self._execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (:id, :name, :tier, :limit, :hash, :created, :revoked)",
                {
                    "id": key.id,
                    "name": key.name,
                    "tier": key.tier,
                    "limit": key.monthly_limit,
                    "hash": key.secret_hash,
                    "created": key.created_at,
                    "revoked": key.revoked_at,
                },
            )

    def key_by_hash(self, secret_hash: str) -> ApiKey | None:
        rows = self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE secret_hash = :h", h=secret_hash)
        return _key(rows[0]) if rows else None

    def key_by_id(self, key_id: str) -> ApiKey | None:
        rows = self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = :id", id=key_id)
        return _key(rows[0]) if rows else None

    def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def count_keys(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM api_keys")[0][0])

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Revoke an active key; False when there is no such active key."""
        with self.transaction():
            _, count = self._execute(
                "UPDATE api_keys SET revoked_at = :when WHERE id = :id AND revoked_at IS NULL",
                {"when": when, "id": key_id},
            )
        return count == 1
