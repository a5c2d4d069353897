"""What an admin does with partners: each action checked, carried out on EC2, saved with
its audit entry. Blocking (database and boto3): async callers use asyncio.to_thread.

The order of work makes retries safe: EC2 first (idempotent), then the record; a failure
in between leaves the record where it was and the same action can simply be repeated.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from trinity_beast.stores.db.base import Database
from trinity_beast.domain.keys import new_key
from trinity_beast.domain.partners.cidr import CidrError, check_access_cidr, check_partner_cidr
from trinity_beast.services.partners.ec2 import ConnectionRequest, Ec2Network
from trinity_beast.domain.partners.model import LIVE, AuditEntry, Partner, PartnerError, check_connection_id, moved, new_partner
from trinity_beast.services.partners.wizard import StackNetwork, onboarding, rule_description


class PartnerService:
    def __init__(self, db: Database, stack: StackNetwork, network: Callable[[], Ec2Network],
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.stack = stack
        self._network_factory = network
        self._network: Ec2Network | None = None
        self.clock = clock

    @property
    def network(self) -> Ec2Network:
        """Built on first use: reading and creating records needs no AWS at all."""
        if self._network is None:
            self._network = self._network_factory()
        return self._network

    # --- reading ------------------------------------------------------------------------
    def get(self, partner_id: str) -> Partner:
        partner = self.db.partner_by_id(partner_id) if partner_id.startswith("pt_") else None
        if partner is None:
            raise PartnerError(404, f"unknown partner {partner_id[:40]!r}")
        return partner

    def list(self) -> list[Partner]:
        return self.db.list_partners()

    def active(self, excluding: str | None = None) -> list[Partner]:
        return [p for p in self.db.list_partners("active") if p.id != excluding]

    def audit(self, partner_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        return self.db.audit_trail(partner_id, limit)

    def onboarding(self, partner: Partner) -> dict[str, Any]:
        missing = self.stack.missing(partner.connection_type, "wizard")
        if missing:
            raise PartnerError(503, f"the onboarding commands need this stack's settings: set {', '.join(missing)}")
        return onboarding(partner, self.stack)

    def preview(self, body: dict[str, Any]) -> dict[str, Any]:
        """The wizard's commands for details not saved yet (validated like a creation)."""
        return self.onboarding(new_partner(body, self.stack.vpc_cidr, self.active(), self.clock()))

    # --- creating -----------------------------------------------------------------------
    def create(self, body: dict[str, Any], actor: str) -> tuple[Partner, str]:
        """An invited partner and its partner-tier key; the secret is returned once."""
        partner = new_partner(body, self.stack.vpc_cidr, self.active(), self.clock())
        key, secret = new_key(f"partner {partner.name}"[:100], "partner", now=partner.created_at)
        partner = replace(partner, api_key_id=key.id)
        audit = AuditEntry.record(partner.id, actor, "create", partner.created_at, status=partner.status,
                                  connection_type=partner.connection_type, api_key_id=key.id)
        try:
            self.db.create_partner(partner, key, audit)
        except Exception as exc:
            if partner.connection_id and self._connection_taken(partner.connection_id):
                raise PartnerError(409, f"connection {partner.connection_id} belongs to another partner") from None
            raise exc
        return partner, secret

    def _connection_taken(self, connection_id: str) -> bool:
        return any(p.connection_id == connection_id for p in self.db.list_partners())

    def _save(self, before: Partner, after: Partner, audit: AuditEntry, revoke_key: bool = False) -> Partner:
        if not self.db.update_partner(after, before.status, audit, self.clock() if revoke_key else None):
            now = self.get(before.id)
            raise PartnerError(409, f"partner {before.id} changed meanwhile (now {now.status}); reload and retry")
        return after

    # --- the connection request ---------------------------------------------------------
    def _request_for(self, partner: Partner, connection_id: str) -> ConnectionRequest:
        """The partner's pending (or accepted) request in EC2, checked to be theirs."""
        request = self.network.find(partner.connection_type, connection_id)
        if request is None:
            raise PartnerError(404, f"EC2 has no {partner.connection_type} request {connection_id} for this stack")
        if request.owner_account != partner.aws_account_id:
            raise PartnerError(
                409, f"{connection_id} comes from account {request.owner_account}, not the partner's {partner.aws_account_id}"
            )
        if request.vpc_id is not None and request.vpc_id != partner.vpc_id:
            raise PartnerError(409, f"{connection_id} comes from {request.vpc_id}, not the partner's VPC {partner.vpc_id}")
        if partner.cidr and request.cidr and request.cidr != partner.cidr:
            raise PartnerError(409, f"{connection_id} comes from CIDR {request.cidr}, not the partner's {partner.cidr}")
        return request

    def _discover(self, partner: Partner) -> str:
        """The one pending request from this partner's account (and VPC), when it was not named."""
        mine = [
            r for r in self.network.pending_requests()
            if r.kind == partner.connection_type and r.owner_account == partner.aws_account_id
            and r.vpc_id in (None, partner.vpc_id)
        ]
        taken = {p.connection_id for p in self.db.list_partners() if p.connection_id}
        mine = [r for r in mine if r.connection_id not in taken]
        if len(mine) != 1:
            found = "no pending request" if not mine else f"{len(mine)} pending requests"
            raise PartnerError(409, f"{found} from account {partner.aws_account_id}: name the connection_id to approve")
        return mine[0].connection_id

    def register(self, partner_id: str, connection_id: Any, actor: str) -> Partner:
        """The partner's endpoint or peering id is known: invited -> pending."""
        partner = self.get(partner_id)
        connection_id = check_connection_id(partner.connection_type, connection_id)
        if partner.connection_id == connection_id and partner.status in ("pending", "active"):
            return partner  # the same registration again: nothing to do
        if partner.status != "invited":
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: only an invited partner takes a connection id")
        if self._connection_taken(connection_id):
            raise PartnerError(409, f"connection {connection_id} belongs to another partner")
        request = self._request_for(partner, connection_id)
        if not request.pending:
            raise PartnerError(409, f"{connection_id} is {request.state}, not waiting for acceptance")
        after = moved(partner, "pending", self.clock(), connection_id=connection_id)
        audit = AuditEntry.record(partner.id, actor, "register", after.updated_at, connection_id=connection_id)
        return self._save(partner, after, audit)

    # --- approving ------------------------------------------------------------------------
    def approve(self, partner_id: str, actor: str, connection_id: Any = None) -> tuple[Partner, bool]:
        """Accept the partner's request and open the network; (partner, changed). Safe to repeat."""
        partner = self.get(partner_id)
        if partner.status in ("rejected", "revoked"):
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: onboard it again as a new partner")
        if partner.status == "invited":
            partner = self.register(partner.id, connection_id or self._discover(partner), actor)
        elif connection_id not in (None, "") and check_connection_id(partner.connection_type, connection_id) != partner.connection_id:
            raise PartnerError(409, f"partner {partner.id} is {partner.status} with connection {partner.connection_id}")
        assert partner.connection_id is not None
        if partner.cidr:
            try:
                check_partner_cidr(partner.cidr, self.stack.vpc_cidr, [(p.name, p.cidr or "") for p in self.active(partner.id)])
            except CidrError as exc:
                raise PartnerError(exc.status, f"cannot approve: {exc}") from None
        self._request_for(partner, partner.connection_id)
        done = {"accepted": self.network.accept(partner.connection_type, partner.connection_id)}
        if partner.connection_type == "peering":
            assert partner.cidr is not None
            done["route_added"] = self.network.ensure_route(partner.cidr, partner.connection_id)
            done["udp_opened"] = self.network.allow_udp(partner.cidr, rule_description(partner))
        if partner.status == "active":
            self.db.add_audit(AuditEntry.record(partner.id, actor, "approve", self.clock(), already_active=True, **done))
            return partner, any(done.values())
        after = moved(partner, "active", self.clock())
        audit = AuditEntry.record(partner.id, actor, "approve", after.updated_at, connection_id=partner.connection_id, **done)
        return self._save(partner, after, audit), True

    # --- refusing and revoking ------------------------------------------------------------
    def _close_network(self, partner: Partner) -> dict[str, bool]:
        """Undo whatever approval opened (each step a no-op when already undone)."""
        done: dict[str, bool] = {}
        if partner.connection_type == "peering" and partner.cidr and partner.connection_id:
            done["route_removed"] = self.network.remove_route(partner.cidr, partner.connection_id)
            if not any(p.cidr == partner.cidr for p in self.active(partner.id)):
                done["udp_closed"] = self.network.deny_udp(partner.cidr)
        if partner.connection_id:
            done["disconnected"] = self.network.reject(partner.connection_type, partner.connection_id)
        return done

    def reject(self, partner_id: str, actor: str, reason: str = "") -> tuple[Partner, bool]:
        """Refuse an invited or pending partner (its request too) and revoke its key."""
        partner = self.get(partner_id)
        if partner.status == "rejected":
            return partner, False
        if partner.status == "active":
            raise PartnerError(409, f"partner {partner.id} is active: revoke it instead of rejecting it")
        after = moved(partner, "rejected", self.clock())
        done = self._close_network(partner)
        audit = AuditEntry.record(partner.id, actor, "reject", after.updated_at, reason=str(reason)[:500], **done)
        return self._save(partner, after, audit, revoke_key=True), True

    def revoke(self, partner_id: str, actor: str, reason: str = "") -> tuple[Partner, bool]:
        """Cut a partner off: connection, route, UDP rules, key. Safe to repeat."""
        partner = self.get(partner_id)
        if partner.status == "revoked":
            return partner, False
        if partner.status not in LIVE:
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: there is nothing left to revoke")
        after = moved(partner, "revoked", self.clock())
        done = self._close_network(partner)
        audit = AuditEntry.record(partner.id, actor, "revoke", after.updated_at, reason=str(reason)[:500], **done)
        return self._save(partner, after, audit, revoke_key=True), True

    # --- requests and access that belong to no partner ----------------------------------
    def pending(self) -> list[dict[str, Any]]:
        """EC2's pending requests, each with the partner it belongs to (or None)."""
        partners = self.db.list_partners()
        by_connection = {p.connection_id: p for p in partners if p.connection_id}
        out = []
        for request in self.network.pending_requests():
            match = by_connection.get(request.connection_id) or next(
                (p for p in partners if p.status == "invited" and p.connection_type == request.kind
                 and p.aws_account_id == request.owner_account and request.vpc_id in (None, p.vpc_id)),
                None,
            )
            out.append({**request.public(), "partner": None if match is None else {
                "id": match.id, "name": match.name, "status": match.status}})
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
        self.db.add_audit(AuditEntry.record(None, actor, "reject_request", self.clock(), connection_id=text,
                                            owner_account=request.owner_account, changed=changed))
        return changed

    def udp_access(self) -> list[dict[str, Any]]:
        owners = {p.cidr: p for p in self.active() if p.cidr}
        return [
            {"cidr": r.cidr, "ports": list(r.ports), "description": r.description,
             "partner": None if r.cidr not in owners else {"id": owners[r.cidr].id, "name": owners[r.cidr].name}}
            for r in self.network.udp_rules()
        ]

    def _access_cidr(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise PartnerError(400, "cidr: required, e.g. 172.31.0.0/16")
        try:
            return str(check_access_cidr(raw, self.stack.vpc_cidr))
        except CidrError as exc:
            raise PartnerError(exc.status, f"cidr: {exc}") from None

    def allow_udp(self, raw_cidr: Any, description: Any, actor: str) -> bool:
        cidr = self._access_cidr(raw_cidr)
        text = description if isinstance(description, str) else ""
        text = "".join(c for c in text if c.isalnum() or c in " ._-:/()#,@[]+=&;{}!$*")[:200] or "trinity-beast UDP access"
        changed = self.network.allow_udp(cidr, text)
        self.db.add_audit(AuditEntry.record(None, actor, "udp_allow", self.clock(), cidr=cidr, description=text, changed=changed))
        return changed

    def deny_udp(self, raw_cidr: Any, actor: str) -> bool:
        cidr = self._access_cidr(raw_cidr)
        owner = next((p for p in self.active() if p.cidr == cidr), None)
        if owner is not None:
            raise PartnerError(409, f"{cidr} is active partner {owner.name!r}'s network: revoke the partner to close it")
        changed = self.network.deny_udp(cidr)
        self.db.add_audit(AuditEntry.record(None, actor, "udp_deny", self.clock(), cidr=cidr, changed=changed))
        return changed
