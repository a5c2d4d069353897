"""CIDR rules for partner networks and UDP access entries (pure functions).

A partner's VPC CIDR is routed from our route table and opened in our security group, so
it must be a real IPv4 network that cannot be confused with our own VPC or with another
active partner's: an overlap would send our replies to the wrong peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

EXAMPLE = "172.31.0.0/16"
VPC_PREFIXES = (16, 28)  # what AWS allows for a VPC CIDR block
MIN_ACCESS_PREFIX = 8  # wider UDP access entries are refused: that is most of the internet


class CidrError(ValueError):
    """A CIDR the caller must fix; `status` is 400 (malformed) or 409 (overlap)."""

    status = 400


class CidrOverlap(CidrError):
    status = 409


def parse_cidr(raw: str) -> ipaddress.IPv4Network:
    """A strict IPv4 network (`10.1.0.0/16`); host bits set or IPv6 are explained, not guessed."""
    text = str(raw).strip()
    if "/" not in text:
        raise CidrError(f"invalid CIDR {text[:60]!r}: expected an IPv4 network with a prefix length, e.g. {EXAMPLE}")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise CidrError(f"invalid CIDR {text[:60]!r}: expected an IPv4 network such as {EXAMPLE}") from None
    if network.version != 4:
        raise CidrError(f"invalid CIDR {text[:60]!r}: only IPv4 networks are supported")
    if str(network) != text:
        raise CidrError(f"invalid CIDR {text!r}: host bits are set; did you mean {network}?")
    return network


def check_partner_cidr(raw: str, own_vpc: str, active: Iterable[tuple[str, str]] = ()) -> ipaddress.IPv4Network:
    """A partner VPC CIDR: valid, /16-/28, clear of our VPC and of every (name, cidr) in `active`."""
    network = parse_cidr(raw)
    low, high = VPC_PREFIXES
    if not low <= network.prefixlen <= high:
        raise CidrError(f"invalid CIDR {network}: a VPC CIDR has a prefix length from /{low} to /{high}")
    ours = parse_cidr(own_vpc)
    if network.overlaps(ours):
        raise CidrOverlap(f"CIDR {network} overlaps this stack's VPC {ours}: the partner needs a different range")
    for name, other in active:
        if other and network.overlaps(parse_cidr(other)):
            raise CidrOverlap(f"CIDR {network} overlaps {other} of active partner {name!r}")
    return network


def check_access_cidr(raw: str, own_vpc: str) -> ipaddress.IPv4Network:
    """A UDP access entry for our security group: valid, not too wide, not our own VPC."""
    network = parse_cidr(raw)
    if network.prefixlen < MIN_ACCESS_PREFIX:
        raise CidrError(f"CIDR {network} is too wide: at most /{MIN_ACCESS_PREFIX} (a narrower range) is allowed")
    ours = parse_cidr(own_vpc)
    if network.overlaps(ours):
        raise CidrOverlap(f"CIDR {network} overlaps this stack's VPC {ours}: it already reaches the UDP servers")
    return network
