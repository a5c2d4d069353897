"""API keys: random secrets shown once, stored only as SHA-256 hashes.

A secret carries 256 bits of randomness, so a fast hash is the right tool (no password
stretching needed) and lets auth find a key by an indexed hash lookup. The public id
(`ak_…`) is what answers, logs and reports show.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

TIERS: tuple[str, ...] = ("partner", "subscriber", "admin")
DEFAULT_MONTHLY_LIMITS: dict[str, int] = {"partner": 0, "subscriber": 100_000, "admin": 0}
SECRET_PREFIX = "tbk_"


class KeyRequestError(ValueError):
    """A key request is invalid (bad tier, name or limit)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    tier: str
    monthly_limit: int  # 0 = unlimited
    secret_hash: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def unlimited(self) -> bool:
        return self.tier == "partner" or self.monthly_limit == 0

    def public(self) -> dict[str, object]:
        """What may be shown about a key: never the secret or its hash."""
        return {
            "id": self.id,
            "name": self.name,
            "tier": self.tier,
            "monthly_limit": self.monthly_limit,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_key(name: str, tier: str, monthly_limit: int | None = None, now: float | None = None) -> tuple[ApiKey, str]:
    """A new key and its secret. The secret is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise KeyRequestError("name: expected 1-100 printable characters")
    if tier not in TIERS:
        raise KeyRequestError(f"tier: expected one of {', '.join(TIERS)}, got {tier!r}")
    if monthly_limit is None:
        monthly_limit = DEFAULT_MONTHLY_LIMITS[tier]
    if monthly_limit < 0:
        raise KeyRequestError("monthly limit: expected 0 (unlimited) or a positive number")
    if tier == "partner":
        monthly_limit = 0  # partners are never limited
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id="ak_" + secrets.token_hex(8),
        name=name,
        tier=tier,
        monthly_limit=monthly_limit,
        secret_hash=hash_secret(secret),
        created_at=time.time() if now is None else now,
    )
    return key, secret


def plausible_secret(secret: str) -> bool:
    """Cheap shape check so junk never reaches the database."""
    return 8 <= len(secret) <= 200 and secret.isascii() and secret.isprintable()
