"""The stack's UDP access rules (security-group ingress on the UDP NLB's port), by CIDR.

A partner's own rule comes and goes with the partner (service.py); these are the rules an
operator adds or removes by hand, and the listing that names each rule's partner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from trinity_beast.domain.partners.cidr import CidrError, check_access_cidr
from trinity_beast.domain.partners.descriptions import transliteration
from trinity_beast.domain.partners.model import AuditEntry, Partner, PartnerError
from trinity_beast.services.partners.ec2 import Ec2Network
from trinity_beast.services.partners.wizard import StackNetwork
from trinity_beast.stores.db.base import Database


class UdpAccess(ABC):
    db: Database
    stack: StackNetwork
    clock: Callable[[], float]

    @property
    @abstractmethod
    def network(self) -> Ec2Network:
        """The EC2 adapter for the stack's network."""

    @abstractmethod
    def active(self, excluding: str | None = None) -> list[Partner]:
        """Active partners (whose CIDRs are theirs to close)."""

    def udp_access(self) -> list[dict[str, Any]]:
        """The UDP rules, each with its partner: the active one with that CIDR, else the one its
        description names (a revoked partner's leftover rule shows as such, not as "—")."""
        partners = self.db.list_partners()
        owners = {p.cidr: p for p in partners if p.cidr and p.status == "active"}
        by_id = {p.id: p for p in partners}
        out = []
        for r in self.network.udp_rules():
            owner = owners.get(r.cidr)
            if owner is None:
                named = next((w for w in r.description.split() if w.startswith("pt_")), None)
                owner = by_id.get(named or "")
            out.append(
                {
                    "cidr": r.cidr,
                    "ports": list(r.ports),
                    "description": r.description,
                    "partner": None if owner is None else {"id": owner.id, "name": owner.name, "status": owner.status},
                    "orphaned": owner is not None and owner.status != "active",
                }
            )
        return out

    def _access_cidr(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise PartnerError(400, "cidr: required, e.g. 172.31.0.0/16")
        try:
            return str(check_access_cidr(raw, self.stack.vpc_cidr))
        except CidrError as exc:
            raise PartnerError(exc.status, f"cidr: {exc}") from None

    def allow_udp(self, raw_cidr: Any, description: Any, actor: str) -> dict[str, Any]:
        cidr = self._access_cidr(raw_cidr)
        typed = description if isinstance(description, str) else ""
        shown = transliteration(typed, 200)
        text = str(shown["stored"]) or "trinity-beast UDP access"
        changed = self.network.allow_udp(cidr, text)
        self.db.add_audit(
            AuditEntry.record(None, actor, "udp_allow", self.clock(), cidr=cidr, description=text, changed=changed)
        )
        return {"changed": changed, "description": {**shown, "stored": text}}

    def deny_udp(self, raw_cidr: Any, actor: str) -> bool:
        cidr = self._access_cidr(raw_cidr)
        owner = next((p for p in self.active() if p.cidr == cidr), None)
        if owner is not None:
            raise PartnerError(
                409, f"{cidr} is active partner {owner.name!r}'s network: revoke the partner to close it"
            )
        changed = self.network.deny_udp(cidr)
        self.db.add_audit(AuditEntry.record(None, actor, "udp_deny", self.clock(), cidr=cidr, changed=changed))
        return changed
