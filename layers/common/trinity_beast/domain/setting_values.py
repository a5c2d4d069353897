"""How one setting's text becomes a value: ports, limits, durations, booleans, URLs, networks,
AWS ids and secrets, each refused with one line that names the setting (ConfigError).

Only ASCII is accepted where a number is expected (no other scripts' digits, spaces or `_`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from trinity_beast.domain.text import whole_number

DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def port_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw)  # ASCII digits only: no sign, spaces, "_" or other scripts' digits
    if value is None or not 1 <= value <= 65535:
        raise ConfigError(f"{name}: expected a port number 1-65535, got {raw!r}")
    return value


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (case-insensitive); unset or empty is the first."""
    raw = env.get(name, "")
    value = raw.strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}: expected {', '.join(choices[:-1])} or {choices[-1]}, got {raw!r}")
    return value


def limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number >= 0, where 0 means no limit."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = whole_number(raw.strip())
    if value is None:
        raise ConfigError(f"{name}: expected a whole number (0 = no limit), got {raw!r}")
    return value


def bounded(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` (ASCII digits)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = whole_number(raw.strip())
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {raw!r}")
    return value


def networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 networks or addresses (`10.0.0.0/24, 10.0.1.0/24`); never `*`."""

    raw = env.get(name, "")
    out: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part == "*":
            raise ConfigError(f"{name}: '*' would trust every address; list the networks, e.g. 10.0.0.0/24,10.0.1.0/24")
        try:
            out.append(str(ipaddress.ip_network(part, strict=True)))
        except ValueError as exc:
            raise ConfigError(
                f"{name}: expected networks such as 10.0.0.0/24 separated by commas, got {part!r} ({exc})"
            ) from None
    return tuple(out)


def secret(env: Mapping[str, str], name: str, minimum: int) -> str:
    raw = env.get(name, "").strip()
    if raw and (len(raw) < minimum or not raw.isascii() or any(c.isspace() for c in raw)):
        raise ConfigError(
            f"{name}: expected at least {minimum} printable ASCII characters without spaces (a random secret)"
        )
    return raw


def positive_number(env: Mapping[str, str], name: str, default: float, unit: str = "seconds") -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not DECIMAL.fullmatch(raw):  # ASCII: float() would take " 5", "1_0" and other scripts' digits
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}")
    return value


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], default: str | None) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}"
        )
    return raw


def aws_id(env: Mapping[str, str], name: str, kind: str, default: str = "") -> str:
    """An AWS id, CIDR or address setting; empty when unset."""
    from trinity_beast.domain.partners.cidr import CidrError, parse_cidr
    from trinity_beast.domain.partners.ids import id_problem, ipv4_problem

    raw = env.get(name, "").strip()
    if not raw:
        return default
    if kind == "cidr":
        try:
            return str(parse_cidr(raw))
        except CidrError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    problem = ipv4_problem(raw) if kind == "ipv4" else id_problem(kind, raw)
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return raw


def secret_id(env: Mapping[str, str], name: str) -> str:
    """A Secrets Manager secret's ARN (or name); empty when unset."""
    raw = env.get(name, "").strip()
    if any(c.isspace() for c in raw) or (raw.startswith("arn:") and ":secretsmanager:" not in raw):
        raise ConfigError(
            f"{name}: expected a Secrets Manager secret ARN (arn:aws…:secretsmanager:…) or name, got {raw!r}"
        )
    return raw
