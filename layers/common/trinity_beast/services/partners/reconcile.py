"""The partner record against EC2's real state (pure: it reads an `Ec2Snapshot`).

An operator may run the wizard's "you run" commands by hand, a partner may delete their
peering, a revoke may have failed half-way. `adoptable` says what the record can safely take
over from EC2 (a request accepted by hand), `drift` lists every disagreement that remains,
and `teardown` lists what a revoke or reject removes and what it must leave, with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trinity_beast.domain.partners.model import Partner
from trinity_beast.services.partners.ec2 import ConnectionRequest, Ec2Snapshot
from trinity_beast.services.partners.wizard import StackNetwork


@dataclass(frozen=True, slots=True)
class Piece:
    """One network piece: what it is, and a sentence about it."""

    kind: str  # connection, route, udp, partner_route
    id: str
    message: str

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "message": self.message}


def candidates(partner: Partner, snapshot: Ec2Snapshot, taken: set[str]) -> list[ConnectionRequest]:
    """Live requests from the partner's account (and VPC) that no other partner claims."""
    return [
        r
        for r in snapshot.requests
        if r.kind == partner.connection_type
        and r.owner_account == partner.aws_account_id
        and r.vpc_id in (None, partner.vpc_id)
        and not r.gone
        and r.connection_id not in taken
    ]


def connection_of(partner: Partner, snapshot: Ec2Snapshot, taken: set[str]) -> ConnectionRequest | None:
    """The partner's request: the registered one, or (invited) the one unclaimed request from it."""
    if partner.connection_id:
        return snapshot.request(partner.connection_type, partner.connection_id)
    found = candidates(partner, snapshot, taken)
    return found[0] if len(found) == 1 else None


def _udp_missing(partner: Partner, snapshot: Ec2Snapshot, stack: StackNetwork) -> list[int]:
    rule = snapshot.udp.get(partner.cidr or "")
    have = set(rule.ports) if rule else set()
    return [p for p in stack.udp_ports if p not in have]


def drift(
    partner: Partner, snapshot: Ec2Snapshot, stack: StackNetwork, taken: set[str], shared_cidr: bool = False
) -> list[Piece]:
    """Where the record and EC2 disagree (after adoption), each with what would fix it."""
    out: list[Piece] = []
    request = connection_of(partner, snapshot, taken)
    cid = partner.connection_id or (request.connection_id if request else "")
    peering = partner.connection_type == "peering" and partner.cidr
    if partner.status == "invited" and request is not None:
        out.append(
            Piece(
                "connection",
                request.connection_id,
                f"EC2 has {request.connection_id} ({request.state}) from this partner: refresh to adopt it",
            )
        )
    elif partner.status == "pending":
        if request is None:
            out.append(
                Piece("connection", cid, f"EC2 no longer knows {cid}: reject the partner, or register its new request")
            )
        elif request.gone:
            out.append(
                Piece("connection", cid, f"{cid} is {request.state} in EC2: reject the partner to close the record")
            )
    elif partner.status == "active":
        if request is None or not request.accepted:
            state = "unknown to EC2" if request is None else request.state
            out.append(Piece("connection", cid, f"{cid} is {state}, but the record says active: revoke the partner"))
        if peering:
            target = snapshot.routes.get(partner.cidr or "")
            if target != cid:
                where = "missing" if target is None else f"going to {target}"
                out.append(
                    Piece(
                        "route",
                        partner.cidr or "",
                        f"our route to {partner.cidr} is {where}: approve again to restore it",
                    )
                )
            missing = _udp_missing(partner, snapshot, stack)
            if missing:
                out.append(
                    Piece(
                        "udp",
                        partner.cidr or "",
                        f"UDP {', '.join(map(str, missing))} from {partner.cidr} is not open: approve again to restore it",
                    )
                )
    else:  # rejected or revoked: nothing of it may remain
        for piece in teardown(partner, snapshot, stack, taken, shared_cidr)[0]:
            out.append(
                Piece(
                    piece.kind,
                    piece.id,
                    f"still in EC2 after {partner.status}: {piece.message}; "
                    f"{'revoke' if partner.status == 'revoked' else 'reject'} again to remove it",
                )
            )
    return out


def teardown(
    partner: Partner, snapshot: Ec2Snapshot, stack: StackNetwork, taken: set[str], shared_cidr: bool = False
) -> tuple[list[Piece], list[Piece]]:
    """(what revoking or rejecting removes now, what stays and why)."""
    remove: list[Piece] = []
    stay: list[Piece] = []
    request = connection_of(partner, snapshot, taken)
    cid = request.connection_id if request else partner.connection_id
    if partner.connection_type == "peering" and partner.cidr:
        target = snapshot.routes.get(partner.cidr)
        if target is not None and target == cid:
            remove.append(
                Piece("route", partner.cidr, f"our route to {partner.cidr} through {cid} ({stack.route_table_id})")
            )
        elif target is not None:
            stay.append(
                Piece(
                    "route",
                    partner.cidr,
                    f"our route to {partner.cidr} goes to {target}, not this partner's peering: left in place",
                )
            )
        rule = snapshot.udp.get(partner.cidr)
        if rule is not None and shared_cidr:
            stay.append(
                Piece("udp", partner.cidr, f"UDP rules for {partner.cidr} kept: another active partner uses that CIDR")
            )
        elif rule is not None:
            ports = " and ".join(map(str, rule.ports))
            remove.append(Piece("udp", partner.cidr, f"UDP {ports} from {partner.cidr} on {stack.security_group_id}"))
        if cid:
            stay.append(
                Piece(
                    "partner_route",
                    partner.route_table_id or "",
                    f"the partner's own route in {partner.route_table_id} (their account): "
                    f"it stops working once the peering is gone; they delete it",
                )
            )
    if request is not None and not request.gone:
        verb = (
            "reject"
            if request.pending
            else ("delete" if partner.connection_type == "peering" else "reject (disconnect)")
        )
        remove.append(Piece("connection", request.connection_id, f"{verb} {request.connection_id} ({request.state})"))
    return remove, stay
