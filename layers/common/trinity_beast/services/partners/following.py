"""Following EC2: adopt what an operator did by hand, report drift, list the requests waiting
for us, and say what a revoke or reject would remove before it runs.

A mixin of PartnerService (service.py), which holds the records and their actions; this part
only reads EC2 (and rejects a stray request), and says so plainly when it cannot be read.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from trinity_beast.domain.partners.model import AuditEntry, Partner, PartnerError, check_connection_id, moved
from trinity_beast.services.partners.ec2 import Ec2Network, Ec2Snapshot
from trinity_beast.services.partners.reconcile import Piece, connection_of, drift, teardown
from trinity_beast.services.partners.wizard import StackNetwork
from trinity_beast.stores.db.base import Database


class FollowingEc2(ABC):
    db: Database
    stack: StackNetwork
    clock: Callable[[], float]

    @property
    @abstractmethod
    def network(self) -> Ec2Network:
        """The EC2 adapter for the stack's network."""

    @abstractmethod
    def get(self, partner_id: str) -> Partner:
        """The partner record, or a 404."""

    @abstractmethod
    def _lock(self, partner_id: str) -> threading.Lock: ...

    @abstractmethod
    def _taken(self, partner: Partner) -> set[str]: ...

    @abstractmethod
    def _shared_cidr(self, partner: Partner) -> bool: ...

    @abstractmethod
    def _save(self, before: Partner, after: Partner, audit: AuditEntry, revoke_key: bool = False) -> Partner: ...

    def _adopt(self, partner: Partner, snapshot: Ec2Snapshot, actor: str) -> tuple[Partner, list[str]]:
        """Take over what EC2 shows was done by hand: a request made (invited -> pending) or
        accepted (-> active). Never anything destructive: a gone request only shows as drift."""
        adopted: list[str] = []
        request = connection_of(partner, snapshot, self._taken(partner))
        if request is None or request.gone:
            return partner, adopted
        if partner.status == "invited":
            after = moved(partner, "pending", self.clock(), connection_id=request.connection_id)
            status = "pending"
            if request.accepted:
                after = moved(after, "active", self.clock())
                status = "active"
            audit = AuditEntry.record(
                partner.id,
                actor,
                "adopt",
                after.updated_at,
                connection_id=request.connection_id,
                state_in_ec2=request.state,
                status=status,
            )
            partner = self._save(partner, after, audit)
            adopted.append(f"{request.connection_id} ({request.state} in EC2): now {status}")
        elif partner.status == "pending" and request.accepted:
            after = moved(partner, "active", self.clock())
            audit = AuditEntry.record(
                partner.id,
                actor,
                "adopt",
                after.updated_at,
                connection_id=request.connection_id,
                state_in_ec2=request.state,
                status="active",
            )
            partner = self._save(partner, after, audit)
            adopted.append(f"{request.connection_id} accepted in EC2: now active")
        return partner, adopted

    def reconcile(self, actor: str, partner_id: str | None = None) -> list[dict[str, Any]]:
        """Read EC2 once, adopt what was done by hand, and report each partner's drift."""
        partners = [self.get(partner_id)] if partner_id else self.db.list_partners()
        self._require_network(*({p.connection_type for p in partners} or {"privatelink", "peering"}))
        configured = any(self._configured(p) for p in partners)
        snapshot = self.network.snapshot() if configured else Ec2Snapshot((), {}, {})
        out = []
        for partner in partners:
            with self._lock(partner.id):
                partner = self.get(partner.id)
                if self._configured(partner):
                    partner, adopted = self._adopt(partner, snapshot, actor)
                    found = drift(partner, snapshot, self.stack, self._taken(partner), self._shared_cidr(partner))
                else:
                    adopted, found = [], []
            out.append({"partner": partner.public(), "adopted": adopted, "drift": [d.public() for d in found]})
        return out

    def _configured(self, partner: Partner) -> bool:
        return not self.stack.missing(partner.connection_type, "approve")

    def _require_network(self, *connection_types: str) -> None:
        """A 503 naming the missing settings unless EC2 can be read for one of `connection_types`
        (an empty answer from an unread EC2 would look like "nothing there")."""
        missing = [self.stack.missing(kind, "approve") for kind in connection_types]
        if all(missing):
            names = sorted({name for names in missing for name in names})
            raise PartnerError(503, f"partner network not configured: set {', '.join(names)} (EC2 was not read)")

    def _unread(self, partner: Partner) -> list[Piece]:
        """Why nothing of this partner's network was checked or removed: EC2 is not configured."""
        missing = ", ".join(self.stack.missing(partner.connection_type, "approve"))
        what = partner.connection_id or f"any request from account {partner.aws_account_id}"
        return [
            Piece(
                "connection",
                partner.connection_id or "",
                f"EC2 was not read (set {missing}): {what} and what it opened were neither checked nor removed",
            )
        ]

    def teardown_plan(self, partner_id: str) -> dict[str, Any]:
        """What revoking or rejecting this partner would remove, and what would stay (read-only)."""
        partner = self.get(partner_id)
        remove: list[Piece]
        if not self._configured(partner):
            remove, stay = [], self._unread(partner)
        else:
            remove, stay = teardown(
                partner, self.network.snapshot(), self.stack, self._taken(partner), self._shared_cidr(partner)
            )
        return {
            "partner": partner.public(),
            "remove": [p.public() for p in remove],
            "remain": [p.public() for p in stay],
            "key": None if partner.status in ("rejected", "revoked") else f"API key {partner.api_key_id} stops working",
        }

    # --- requests and access that belong to no partner ----------------------------------
    def pending(self) -> list[dict[str, Any]]:
        """EC2's pending requests, each with the partner it belongs to (or None)."""
        self._require_network("privatelink", "peering")
        partners = self.db.list_partners()
        by_connection = {p.connection_id: p for p in partners if p.connection_id}
        out = []
        for request in self.network.pending_requests():
            match = by_connection.get(request.connection_id) or next(
                (
                    p
                    for p in partners
                    if p.status == "invited"
                    and p.connection_type == request.kind
                    and p.aws_account_id == request.owner_account
                    and request.vpc_id in (None, p.vpc_id)
                ),
                None,
            )
            out.append(
                {
                    **request.public(),
                    "partner": None if match is None else {"id": match.id, "name": match.name, "status": match.status},
                }
            )
        return out

    def reject_request(self, connection_id: Any, actor: str) -> bool:
        """Refuse a pending request no partner record claims (someone we never invited)."""
        text = str(connection_id or "")
        connection_type = "privatelink" if text.startswith("vpce-") else "peering"
        text = check_connection_id(connection_type, connection_id)
        owner = next((p for p in self.db.list_partners() if p.connection_id == text), None)
        if owner is not None:
            raise PartnerError(409, f"{text} belongs to partner {owner.id}: reject or revoke the partner instead")
        request = self.network.find(connection_type, text)
        if request is None:
            raise PartnerError(404, f"EC2 has no {connection_type} request {text} for this stack")
        changed = self.network.reject(connection_type, text) if request.pending else False
        self.db.add_audit(
            AuditEntry.record(
                None,
                actor,
                "reject_request",
                self.clock(),
                connection_id=text,
                owner_account=request.owner_account,
                changed=changed,
            )
        )
        return changed
