"""Shapes of AWS identifiers, shared by settings validation and partner records.

Checked up front so a typo is a clear 400 (or a start-up error naming the setting), never
an opaque EC2 failure half-way through an approval.
"""

from __future__ import annotations

import ipaddress
import re

PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "vpc": (re.compile(r"^vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "vpc-0a1b2c3d4e5f67890"),
    "subnet": (re.compile(r"^subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "subnet-0a1b2c3d4e5f67890"),
    "security_group": (re.compile(r"^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "sg-0a1b2c3d4e5f67890"),
    "route_table": (re.compile(r"^rtb-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "rtb-0a1b2c3d4e5f67890"),
    "endpoint": (re.compile(r"^vpce-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "vpce-0a1b2c3d4e5f67890"),
    "peering": (re.compile(r"^pcx-(?:[0-9a-f]{8}|[0-9a-f]{17})$"), "pcx-0a1b2c3d4e5f67890"),
    "account": (re.compile(r"^[0-9]{12}$"), "123456789012"),
    "region": (re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-[0-9]$"), "us-east-2"),
    "service_name": (
        re.compile(r"^com\.amazonaws\.vpce\.[a-z]{2}(?:-gov)?-[a-z]+-[0-9]\.vpce-svc-(?:[0-9a-f]{8}|[0-9a-f]{17})$"),
        "com.amazonaws.vpce.us-east-2.vpce-svc-0a1b2c3d4e5f67890",
    ),
}


def id_problem(kind: str, value: str) -> str | None:
    """None when `value` has the shape of an AWS `kind` id, else what was expected."""
    pattern, example = PATTERNS[kind]
    if pattern.match(value):
        return None
    return f"expected an id like {example}, got {value[:60]!r}"


def ipv4_problem(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"expected an IPv4 address like 10.0.1.25, got {value[:60]!r}"
    return None


def service_id(service_name: str) -> str:
    """`com.amazonaws.vpce.us-east-2.vpce-svc-0abc…` -> `vpce-svc-0abc…` (its last part)."""
    return service_name.rsplit(".", 1)[-1]
