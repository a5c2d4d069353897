"""Partner rows: create (with its key and audit entry), guarded update, look up, list.

Each change writes the partner, its key and its audit entry in one transaction, so it builds
on the key and audit repositories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.partners.model import AuditEntry, Partner
from trinity_beast.stores.db.audit import AuditRows
from trinity_beast.stores.db.keys import KeyRows

_PARTNER_COLUMNS = (
    "id, name, aws_account_id, region, connection_type, vpc_id, cidr, subnet_ids, security_group_ids, "
    "route_table_id, connection_id, status, api_key_id, created_at, updated_at"
)


def _partner(row: Sequence[Any]) -> Partner:
    return Partner(
        id=row[0],
        name=row[1],
        aws_account_id=row[2],
        region=row[3],
        connection_type=row[4],
        vpc_id=row[5],
        cidr=row[6],
        subnet_ids=tuple(row[7].split()),
        security_group_ids=tuple(row[8].split()),
        route_table_id=row[9],
        connection_id=row[10],
        status=row[11],
        api_key_id=row[12],
        created_at=float(row[13]),
        updated_at=float(row[14]),
    )


def _partner_params(p: Partner) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "aws_account_id": p.aws_account_id,
        "region": p.region,
        "connection_type": p.connection_type,
        "vpc_id": p.vpc_id,
        "cidr": p.cidr,
        "subnet_ids": " ".join(p.subnet_ids),
        "security_group_ids": " ".join(p.security_group_ids),
        "route_table_id": p.route_table_id,
        "connection_id": p.connection_id,
        "status": p.status,
        "api_key_id": p.api_key_id,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


class PartnerRows(KeyRows, AuditRows):
    def create_partner(self, partner: Partner, key: ApiKey, audit: AuditEntry) -> None:
        """The partner, its key (always active) and the audit entry together, or none of them."""
        names = ", ".join(f":{c.strip()}" for c in _PARTNER_COLUMNS.split(","))
        with self.transaction():
            self._insert_key(replace(key, revoked_at=None))
            self._execute(f"INSERT INTO partners ({_PARTNER_COLUMNS}) VALUES ({names})", _partner_params(partner))
            self._insert_audit(audit)

    def update_partner(
        self, partner: Partner, expected_status: str, audit: AuditEntry, revoke_key_at: float | None = None
    ) -> bool:
        """Save `partner` if it is still `expected_status` (else False, nothing written), with its
        audit entry and, when `revoke_key_at` is set, its key revoked, in one transaction."""
        sets = ", ".join(f"{c.strip()} = :{c.strip()}" for c in _PARTNER_COLUMNS.split(",")[1:])
        with self.transaction():
            _, count = self._execute(
                f"UPDATE partners SET {sets} WHERE id = :id AND status = :expected",
                {**_partner_params(partner), "expected": expected_status},
            )
            if count != 1:
                return False
            if revoke_key_at is not None and partner.api_key_id:
                self._revoke_key(partner.api_key_id, revoke_key_at)
            self._insert_audit(audit)
        return True

    def partner_by_id(self, partner_id: str) -> Partner | None:
        rows = self.query(f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE id = :id", id=partner_id)
        return _partner(rows[0]) if rows else None

    def list_partners(self, status: str | None = None) -> list[Partner]:
        params = {} if status is None else {"status": status}
        where = "WHERE status = :status" if params else ""
        rows = self.query(f"SELECT {_PARTNER_COLUMNS} FROM partners {where} ORDER BY created_at, id", **params)
        return [_partner(r) for r in rows]
