"""Partner records, their life cycle and the validation of what an admin sends.

Pure: no database, no AWS. A partner moves invited -> pending (its endpoint or peering
request is known) -> active (accepted) or rejected; any live partner can be revoked.
Repeating the action that led to the current state changes nothing (idempotent);
anything else out of order is a 409 that says what is possible instead.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trinity_beast.domain.partners.cidr import CidrError, check_partner_cidr
from trinity_beast.domain.partners.ids import id_problem

STATUSES: tuple[str, ...] = ("invited", "pending", "active", "rejected", "revoked")
CONNECTION_TYPES: tuple[str, ...] = ("privatelink", "peering")
LIVE: frozenset[str] = frozenset({"invited", "pending", "active"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "invited": frozenset({"pending", "rejected", "revoked"}),
    "pending": frozenset({"active", "rejected", "revoked"}),
    "active": frozenset({"revoked"}),
    "rejected": frozenset(),
    "revoked": frozenset(),
}
CONNECTION_KIND = {"privatelink": "endpoint", "peering": "peering"}  # ids.PATTERNS key per type
MAX_LIST = 20  # subnets or security groups in one request


class PartnerError(Exception):
    """What a caller did wrong (or what failed), with the HTTP status to answer."""

    def __init__(self, status: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    aws_account_id: str
    region: str
    connection_type: str
    vpc_id: str
    cidr: str | None  # peering: the partner VPC's CIDR
    subnet_ids: tuple[str, ...]  # privatelink: where their endpoint goes
    security_group_ids: tuple[str, ...]  # privatelink: their endpoint's groups (optional)
    route_table_id: str | None  # peering: their route table that gets our route
    connection_id: str | None  # vpce-… or pcx-…, once known
    status: str
    api_key_id: str | None
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "aws_account_id": self.aws_account_id,
            "region": self.region,
            "connection_type": self.connection_type,
            "vpc_id": self.vpc_id,
            "cidr": self.cidr,
            "subnet_ids": list(self.subnet_ids),
            "security_group_ids": list(self.security_group_ids),
            "route_table_id": self.route_table_id,
            "connection_id": self.connection_id,
            "status": self.status,
            "api_key_id": self.api_key_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str  # sorts in time order: nanoseconds, then randomness
    partner_id: str | None  # None for actions on no one partner (UDP access, unknown requests)
    at: float
    actor: str  # the admin key id
    action: str
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def record(
        cls, partner_id: str | None, actor: str, action: str, now: float | None = None, **detail: Any
    ) -> AuditEntry:
        at = time.time() if now is None else now
        return cls(f"{time.time_ns():020d}-{secrets.token_hex(3)}", partner_id, at, actor, action, detail)

    def public(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "detail": self.detail,
        }


_FIELDS = {
    "id",
    "name",
    "aws_account_id",
    "region",
    "connection_type",
    "vpc_id",
    "cidr",
    "subnet_ids",
    "security_group_ids",
    "route_table_id",
    "connection_id",
}


def _text(body: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise PartnerError(400, f"{name}: required")
        return None
    if not isinstance(value, str):
        raise PartnerError(400, f"{name}: expected a string")
    return value.strip()


def _aws_id(body: Mapping[str, Any], name: str, kind: str, required: bool = True) -> str | None:
    value = _text(body, name, required)
    if value is not None and (problem := id_problem(kind, value)):
        raise PartnerError(400, f"{name}: {problem}")
    return value


def _id_list(body: Mapping[str, Any], name: str, kind: str, required: bool) -> tuple[str, ...]:
    raw = body.get(name)
    if isinstance(raw, str):
        raw = [p for p in raw.replace(",", " ").split() if p]
    if raw is None or raw == []:
        if required:
            raise PartnerError(400, f"{name}: required (at least one id)")
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw) or len(raw) > MAX_LIST:
        raise PartnerError(400, f"{name}: expected a list of at most {MAX_LIST} ids")
    for value in raw:
        if problem := id_problem(kind, value.strip()):
            raise PartnerError(400, f"{name}: {problem}")
    return tuple(dict.fromkeys(v.strip() for v in raw))


def check_connection_id(connection_type: str, value: Any) -> str:
    kind = CONNECTION_KIND[connection_type]
    if not isinstance(value, str) or id_problem(kind, value.strip()):
        shown = value if isinstance(value, str) else type(value).__name__
        example = "vpce-0a1b2c3d4e5f67890" if kind == "endpoint" else "pcx-0a1b2c3d4e5f67890"
        raise PartnerError(
            400, f"connection_id: a {connection_type} partner's id looks like {example}, got {str(shown)[:60]!r}"
        )
    return value.strip()


PARTNER_ID = re.compile(r"^pt_[0-9a-f]{16}$")


def _partner_id(body: Mapping[str, Any]) -> str:
    """A preview's id carried into the creation (so the previewed rule descriptions are the real
    ones), or a new one. Random, not a secret; the database refuses one already taken."""
    value = body.get("id")
    if value in (None, ""):
        return new_id("pt_")
    if not isinstance(value, str) or not PARTNER_ID.match(value):
        raise PartnerError(400, "id: expected a partner id from a preview, like pt_0a1b2c3d4e5f6789")
    return value


def new_partner(body: Mapping[str, Any], own_vpc_cidr: str, active: list[Partner], now: float | None = None) -> Partner:
    """A new invited partner from an admin's request, every field checked; every problem is
    reported at once (`data.errors`: field and message each), not the first one only."""
    if not isinstance(body, Mapping):
        raise PartnerError(400, "expected a JSON object with the partner's details")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise PartnerError(400, f"unknown field(s): {', '.join(unknown)[:200]}; expected {', '.join(sorted(_FIELDS))}")
    problems: list[tuple[str, PartnerError]] = []

    def check(name: str, fn: Callable[[], Any], fallback: Any = None) -> Any:
        try:
            return fn()
        except PartnerError as exc:
            problems.append((name, exc))
            return fallback

    def name_of() -> str:
        name = _text(body, "name") or ""
        if len(name) > 100 or any(ord(c) < 32 for c in name):
            raise PartnerError(400, "name: expected 1-100 printable characters")
        return name

    def type_of() -> str:
        connection_type = _text(body, "connection_type")
        if connection_type not in CONNECTION_TYPES:
            raise PartnerError(
                400, f"connection_type: expected privatelink or peering, got {str(connection_type)[:30]!r}"
            )
        return connection_type

    def cidr_of() -> str | None:
        if not peering:
            if body.get("cidr"):
                raise PartnerError(400, "cidr: only peering partners have a CIDR (PrivateLink needs none)")
            return None
        raw_cidr = _text(body, "cidr")
        try:
            return str(check_partner_cidr(raw_cidr or "", own_vpc_cidr, [(p.name, p.cidr or "") for p in active]))
        except CidrError as exc:
            raise PartnerError(exc.status, f"cidr: {exc}") from None

    partner_id = check("id", lambda: _partner_id(body), "")
    name = check("name", name_of, "")
    connection_type = check("connection_type", type_of)
    peering = connection_type == "peering"
    account = check("aws_account_id", lambda: _aws_id(body, "aws_account_id", "account"), "")
    region = check("region", lambda: _aws_id(body, "region", "region"), "")
    vpc_id = check("vpc_id", lambda: _aws_id(body, "vpc_id", "vpc"), "")
    cidr = check("cidr", cidr_of)
    subnets = () if peering else check("subnet_ids", lambda: _id_list(body, "subnet_ids", "subnet", required=True), ())
    groups = (
        ()
        if peering
        else check(
            "security_group_ids", lambda: _id_list(body, "security_group_ids", "security_group", required=False), ()
        )
    )
    route_table = check("route_table_id", lambda: _aws_id(body, "route_table_id", "route_table")) if peering else None
    connection_id = body.get("connection_id")
    if connection_id not in (None, "") and connection_type in CONNECTION_TYPES:
        connection_id = check("connection_id", lambda: check_connection_id(connection_type, connection_id))
    if problems:
        statuses = {exc.status for _, exc in problems}
        raise PartnerError(
            statuses.pop() if len(statuses) == 1 else 400,
            "; ".join(exc.message for _, exc in problems),
            data={"errors": [{"field": name, "message": exc.message} for name, exc in problems]},
        )
    at = time.time() if now is None else now
    return Partner(
        id=partner_id,
        name=name,
        aws_account_id=account or "",
        region=region or "",
        connection_type=connection_type,
        vpc_id=vpc_id or "",
        cidr=cidr,
        subnet_ids=subnets,
        security_group_ids=groups,
        route_table_id=route_table,
        connection_id=None if connection_id in (None, "") else connection_id,
        status="pending" if connection_id else "invited",
        api_key_id=None,
        created_at=at,
        updated_at=at,
    )


def moved(partner: Partner, status: str, now: float | None = None, **changes: Any) -> Partner:
    """`partner` in `status`; PartnerError(409) when the life cycle does not allow it."""
    if status not in TRANSITIONS[partner.status]:
        allowed = ", ".join(sorted(TRANSITIONS[partner.status])) or "nothing (it is final)"
        raise PartnerError(409, f"partner {partner.id} is {partner.status}: it can move to {allowed}, not {status}")
    return replace(partner, status=status, updated_at=time.time() if now is None else now, **changes)
