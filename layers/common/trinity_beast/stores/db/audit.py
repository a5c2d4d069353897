"""Partner audit rows: append an entry, read a partner's (or everyone's) trail.

Partner changes append their entry inside their own transaction through `_insert_audit`.
"""

from __future__ import annotations

from typing import Any

from trinity_beast.domain.partners.model import AuditEntry
from trinity_beast.stores.db.repository import Repository

_AUDIT_COLUMNS = "id, partner_id, at, actor, action, detail"


class AuditRows(Repository):
    def _insert_audit(self, entry: AuditEntry) -> None:
        """Append one entry (the caller holds the transaction)."""
        import orjson

        self._execute(
            f"INSERT INTO partner_audit ({_AUDIT_COLUMNS}) VALUES (:id, :p, :at, :actor, :action, :detail)",
            {
                "id": entry.id,
                "p": entry.partner_id,
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "detail": orjson.dumps(entry.detail).decode(),
            },
        )

    def add_audit(self, entry: AuditEntry) -> None:
        with self.transaction():
            self._insert_audit(entry)

    def audit_trail(self, partner_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """The newest `limit` entries (of one partner, or of all), oldest first."""
        import orjson

        params: dict[str, Any] = {"n": int(limit)} if partner_id is None else {"n": int(limit), "p": partner_id}
        where = "WHERE partner_id = :p" if partner_id is not None else ""
        rows = self.query(f"SELECT {_AUDIT_COLUMNS} FROM partner_audit {where} ORDER BY id DESC LIMIT :n", **params)
        return [AuditEntry(r[0], r[1], float(r[2]), r[3], r[4], orjson.loads(r[5])) for r in reversed(rows)]
