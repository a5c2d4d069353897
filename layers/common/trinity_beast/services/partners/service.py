"""What an admin does with partners: each action checked, carried out on EC2, saved with
its audit entry. Blocking (database and boto3): async callers use asyncio.to_thread.

The order of work makes retries safe: EC2 first (idempotent), then the record; a failure
in between leaves the record where it was and the same action can simply be repeated.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from trinity_beast.domain.keys import new_key
from trinity_beast.domain.partners.cidr import CidrError, check_partner_cidr
from trinity_beast.domain.partners.model import (
    AuditEntry,
    Partner,
    PartnerError,
    check_connection_id,
    moved,
    new_partner,
)
from trinity_beast.services.partners.ec2 import ConnectionRequest, Ec2Network
from trinity_beast.services.partners.following import FollowingEc2
from trinity_beast.services.partners.handoff import handoff
from trinity_beast.services.partners.reconcile import Piece, candidates, connection_of, teardown
from trinity_beast.services.partners.udp_access import UdpAccess
from trinity_beast.services.partners.wizard import StackNetwork, onboarding, rule_description
from trinity_beast.stores.db.base import Database


class PartnerService(UdpAccess, FollowingEc2):
    def __init__(
        self,
        db: Database,
        stack: StackNetwork,
        network: Callable[[], Ec2Network],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.stack = stack
        self._network_factory = network
        self._network: Ec2Network | None = None
        self.clock = clock
        # One action at a time per partner in this process: a double click waits for the
        # first and then finds the work done (the record's status check covers other processes).
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, partner_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(partner_id, threading.Lock())

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

    def active(self, excluding: str | None = None) -> builtins.list[Partner]:
        return [p for p in self.db.list_partners("active") if p.id != excluding]

    def audit(self, partner_id: str | None = None, limit: int = 200) -> builtins.list[AuditEntry]:
        return self.db.audit_trail(partner_id, limit)

    def onboarding(self, partner: Partner) -> dict[str, Any]:
        missing = self.stack.missing(partner.connection_type, "wizard")
        if missing:
            raise PartnerError(503, f"the onboarding commands need this stack's settings: set {', '.join(missing)}")
        return onboarding(partner, self.stack)

    def onboarding_of(self, partner_id: str) -> dict[str, Any]:
        partner = self.get(partner_id)
        if partner.status in ("rejected", "revoked"):
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: it has no onboarding commands any more")
        return self.onboarding(partner)

    def handoff(self, partner_id: str) -> dict[str, Any]:
        """The sheet for the partner, with the endpoint's DNS name once EC2 knows it."""
        partner = self.get(partner_id)
        if partner.status in ("rejected", "revoked"):
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: there is nothing to hand over")
        missing = self.stack.missing(partner.connection_type, "wizard")
        if missing:
            raise PartnerError(503, f"the hand-off needs this stack's settings: set {', '.join(missing)}")
        dns = None
        nlb: list[tuple[str, str]] | None = []
        if partner.connection_type == "privatelink" and partner.connection_id and self._configured(partner):
            request = self.network.find("privatelink", partner.connection_id)
            dns = request.dns_names[0] if request is not None and request.dns_names else None
        if partner.connection_type == "peering":
            nlb = self.network.nlb_addresses()
        return handoff(partner, self.stack, dns, nlb)

    def preview(self, body: dict[str, Any]) -> dict[str, Any]:
        """The wizard's commands for details not saved yet (validated like a creation)."""
        return self.onboarding(new_partner(body, self.stack.vpc_cidr, self.active(), self.clock()))

    # --- creating -----------------------------------------------------------------------
    def create(self, body: dict[str, Any], actor: str) -> tuple[Partner, str]:
        """An invited partner and its partner-tier key; the secret is returned once."""
        partner = new_partner(body, self.stack.vpc_cidr, self.active(), self.clock())
        key, secret = new_key(f"partner {partner.name}"[:100], "partner", now=partner.created_at)
        partner = replace(partner, api_key_id=key.id)
        audit = AuditEntry.record(
            partner.id,
            actor,
            "create",
            partner.created_at,
            status=partner.status,
            connection_type=partner.connection_type,
            api_key_id=key.id,
        )
        try:
            self.db.create_partner(partner, key, audit)
        except Exception as exc:
            if partner.connection_id and self._connection_taken(partner.connection_id):
                raise PartnerError(409, f"connection {partner.connection_id} belongs to another partner") from None
            if self.db.partner_by_id(partner.id) is not None:
                raise PartnerError(
                    409, f"id: partner {partner.id} exists already; preview again for a new id"
                ) from None
            raise exc
        return partner, secret

    def _connection_taken(self, connection_id: str) -> bool:
        return any(p.connection_id == connection_id for p in self.db.list_partners())

    def _save(self, before: Partner, after: Partner, audit: AuditEntry, revoke_key: bool = False) -> Partner:
        if not self.db.update_partner(after, before.status, audit, self.clock() if revoke_key else None):
            now = self.get(before.id)
            if now.status == after.status:
                return now  # the same action, done meanwhile (a double submit elsewhere): success
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
                409,
                f"{connection_id} comes from account {request.owner_account}, not the partner's {partner.aws_account_id}",
            )
        if request.vpc_id is not None and request.vpc_id != partner.vpc_id:
            raise PartnerError(
                409, f"{connection_id} comes from {request.vpc_id}, not the partner's VPC {partner.vpc_id}"
            )
        if partner.cidr and request.cidr and request.cidr != partner.cidr:
            raise PartnerError(409, f"{connection_id} comes from CIDR {request.cidr}, not the partner's {partner.cidr}")
        return request

    def _taken(self, partner: Partner) -> set[str]:
        return {p.connection_id for p in self.db.list_partners() if p.connection_id and p.id != partner.id}

    def _discover(self, partner: Partner) -> str:
        """The one live request from this partner's account (and VPC), when it was not named:
        pending, or already accepted by hand with the wizard's commands."""
        self._require_network(partner.connection_type)
        mine = candidates(partner, self.network.snapshot(), self._taken(partner))
        if len(mine) != 1:
            found = "no request" if not mine else f"{len(mine)} requests ({', '.join(r.connection_id for r in mine)})"
            raise PartnerError(
                409,
                f"{found} from account {partner.aws_account_id} and VPC {partner.vpc_id} in EC2: "
                "name the connection_id to approve (in the Command Center: Accept the right "
                "one under Pending Approvals)",
            )
        return mine[0].connection_id

    def register(self, partner_id: str, connection_id: Any, actor: str) -> Partner:
        """The partner's endpoint or peering id is known: invited -> pending."""
        with self._lock(partner_id):
            return self._register(partner_id, connection_id, actor)

    def _register(self, partner_id: str, connection_id: Any, actor: str, accepted_ok: bool = False) -> Partner:
        partner = self.get(partner_id)
        connection_id = check_connection_id(partner.connection_type, connection_id)
        if partner.connection_id == connection_id and partner.status in ("pending", "active"):
            return partner  # the same registration again: nothing to do
        if partner.status != "invited":
            raise PartnerError(
                409, f"partner {partner.id} is {partner.status}: only an invited partner takes a connection id"
            )
        if self._connection_taken(connection_id):
            raise PartnerError(409, f"connection {connection_id} belongs to another partner")
        request = self._request_for(partner, connection_id)
        if not (request.pending or (accepted_ok and request.accepted)):
            raise PartnerError(409, f"{connection_id} is {request.state}, not waiting for acceptance")
        after = moved(partner, "pending", self.clock(), connection_id=connection_id)
        audit = AuditEntry.record(
            partner.id, actor, "register", after.updated_at, connection_id=connection_id, state_in_ec2=request.state
        )
        return self._save(partner, after, audit)

    # --- approving ------------------------------------------------------------------------
    def approve(self, partner_id: str, actor: str, connection_id: Any = None) -> tuple[Partner, bool]:
        """Accept the partner's request and open the network; (partner, changed). Safe to repeat,
        and a request the operator accepted by hand is taken over, not refused."""
        with self._lock(partner_id):
            return self._approve(partner_id, actor, connection_id)

    def _approve(self, partner_id: str, actor: str, connection_id: Any = None) -> tuple[Partner, bool]:
        partner = self.get(partner_id)
        if partner.status in ("rejected", "revoked"):
            raise PartnerError(409, f"partner {partner.id} is {partner.status}: onboard it again as a new partner")
        if partner.status == "invited":
            partner = self._register(partner.id, connection_id or self._discover(partner), actor, accepted_ok=True)
        elif (
            connection_id not in (None, "")
            and check_connection_id(partner.connection_type, connection_id) != partner.connection_id
        ):
            raise PartnerError(409, f"partner {partner.id} is {partner.status} with connection {partner.connection_id}")
        assert partner.connection_id is not None
        if partner.cidr:
            try:
                check_partner_cidr(
                    partner.cidr, self.stack.vpc_cidr, [(p.name, p.cidr or "") for p in self.active(partner.id)]
                )
            except CidrError as exc:
                raise PartnerError(exc.status, f"cannot approve: {exc}") from None
        self._request_for(partner, partner.connection_id)
        done: dict[str, Any] = {}
        step = "accept the connection"
        try:
            done["accepted"] = self.network.accept(partner.connection_type, partner.connection_id)
            if partner.connection_type == "peering":
                assert partner.cidr is not None
                step = f"add our route to {partner.cidr}"
                done["route_added"] = self.network.ensure_route(partner.cidr, partner.connection_id)
                step = f"open UDP {' and '.join(map(str, self.stack.udp_ports))} to {partner.cidr}"
                done["udp_opened"] = self.network.allow_udp(partner.cidr, rule_description(partner))
        except PartnerError as exc:
            self.db.add_audit(
                AuditEntry.record(
                    partner.id, actor, "approve_failed", self.clock(), step=step, error=exc.message[:300], **done
                )
            )
            raise PartnerError(
                exc.status, f"approve failed at step '{step}': {exc.message}", data={"step": step, "done": done}
            ) from None
        if partner.status == "active":
            self.db.add_audit(
                AuditEntry.record(partner.id, actor, "approve", self.clock(), already_active=True, **done)
            )
            return partner, any(done.values())
        after = moved(partner, "active", self.clock())
        audit = AuditEntry.record(
            partner.id, actor, "approve", after.updated_at, connection_id=partner.connection_id, **done
        )
        return self._save(partner, after, audit), True

    # --- following EC2 --------------------------------------------------------------------
    def _shared_cidr(self, partner: Partner) -> bool:
        return bool(partner.cidr) and any(p.cidr == partner.cidr for p in self.active(partner.id))

    # --- refusing and revoking ------------------------------------------------------------
    def _close_network(self, partner: Partner) -> tuple[dict[str, Any], builtins.list[Piece]]:
        """Remove every network piece the partner has in EC2 (each step a no-op when already
        undone); what must stay is returned with the reason."""
        if not self._configured(partner):
            return {}, self._unread(partner)
        snapshot = self.network.snapshot()
        remove, stay = teardown(partner, snapshot, self.stack, self._taken(partner), self._shared_cidr(partner))
        done: dict[str, Any] = {}
        request = connection_of(partner, snapshot, self._taken(partner))
        step = ""
        try:
            for piece in remove:
                step = piece.message
                if piece.kind == "route":
                    done["route_removed"] = self.network.remove_route(
                        piece.id, request.connection_id if request else ""
                    )
                elif piece.kind == "udp":
                    done["udp_closed"] = self.network.deny_udp(piece.id)
                elif piece.kind == "connection":
                    done["disconnected"] = self.network.reject(partner.connection_type, piece.id)
        except PartnerError as exc:
            raise PartnerError(
                exc.status,
                f"stopped at step '{step}': {exc.message}; nothing was saved, repeat to "
                f"finish (done so far: {done or 'nothing'})",
                data={"step": step, "done": done, "remain": [p.public() for p in stay]},
            ) from None
        return done, stay

    def reject(self, partner_id: str, actor: str, reason: str = "") -> tuple[Partner, bool, builtins.list[Piece]]:
        """Refuse an invited or pending partner (its request too) and revoke its key."""
        with self._lock(partner_id):
            partner = self.get(partner_id)
            if partner.status == "active":
                raise PartnerError(409, f"partner {partner.id} is active: revoke it instead of rejecting it")
            if partner.status == "revoked":
                raise PartnerError(409, f"partner {partner.id} is revoked: there is nothing left to reject")
            return self._end(partner, "rejected", "reject", actor, reason)

    def revoke(self, partner_id: str, actor: str, reason: str = "") -> tuple[Partner, bool, builtins.list[Piece]]:
        """Cut a partner off: connection, route, UDP rules, key. Safe to repeat: on a revoked
        partner it removes whatever EC2 still has (an earlier revoke that stopped half-way)."""
        with self._lock(partner_id):
            partner = self.get(partner_id)
            if partner.status == "rejected":
                raise PartnerError(
                    409, f"partner {partner.id} is rejected: reject it again to remove what EC2 still has"
                )
            return self._end(partner, "revoked", "revoke", actor, reason)

    def _end(
        self, partner: Partner, status: str, action: str, actor: str, reason: str
    ) -> tuple[Partner, bool, builtins.list[Piece]]:
        done, stay = self._close_network(partner)
        remain = {"remain": [p.message for p in stay]} if stay else {}
        if partner.status == status:  # again: only what EC2 still had
            if any(done.values()):
                self.db.add_audit(
                    AuditEntry.record(partner.id, actor, f"{action}_cleanup", self.clock(), **done, **remain)
                )
            return partner, any(done.values()), stay
        after = moved(partner, status, self.clock())
        audit = AuditEntry.record(
            partner.id, actor, action, after.updated_at, reason=str(reason)[:500], **done, **remain
        )
        return self._save(partner, after, audit, revoke_key=True), True, stay
