"""API key rows: insert, look up by hash or id, list, count, revoke.

The partner repository reuses `_insert_key` and `_revoke_key` inside its own transactions,
so a partner and its key are written together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trinity_beast.domain.keys import ApiKey
from trinity_beast.stores.db.repository import Repository

_KEY_COLUMNS = "id, name, tier, monthly_limit, secret_hash, created_at, revoked_at"


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


class KeyRows(Repository):
    def _insert_key(self, key: ApiKey) -> None:
        """Insert one key row (the caller holds the transaction)."""
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

    def _revoke_key(self, key_id: str, when: float) -> int:
        """Revoke the key if active (the caller holds the transaction); return rows changed."""
        _, count = self._execute(
            "UPDATE api_keys SET revoked_at = :when WHERE id = :id AND revoked_at IS NULL",
            {"when": when, "id": key_id},
        )
        return count

    def insert_key(self, key: ApiKey) -> None:
        with self.transaction():
            self._insert_key(key)

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

    def insert_first_key(self, key: ApiKey, before: Callable[[], None] | None = None) -> bool:
        """Insert `key` only while there are no keys at all; False if there are.

        Serialized across processes by the migration lock, so tasks starting together make one
        first key between them. `before` runs inside the lock, just before the insert (storing
        the secret elsewhere); if it raises, nothing is inserted.
        """
        with self.transaction():
            self._lock_migrations()
            if int(self._execute("SELECT COUNT(*) FROM api_keys")[0][0][0]):
                return False
            if before is not None:
                before()
            self._insert_key(key)
        return True

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Revoke an active key; False when there is no such active key."""
        with self.transaction():
            count = self._revoke_key(key_id, when)
        return count == 1
