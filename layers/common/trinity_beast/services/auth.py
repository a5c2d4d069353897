"""Who is asking: secrets to keys (with a short in-process cache) and where a key stands this month.

Every route and protocol authenticates here, so a key is checked the same way everywhere.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Callable, Sequence

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import ApiKey, hash_secret, plausible_secret
from trinity_beast.domain.usage import Quota
from trinity_beast.services.meter import Meter
from trinity_beast.stores.db.base import Database


class KeyRing:
    """Authenticates secrets against the database with a short in-process cache.

    The cache keeps the hot path off the database; its lifetime (`ttl` seconds) bounds how
    long a revoked key can still be used by a process. It is keyed by the secret itself so a
    hit costs no hashing; the secret is in this process's request buffers anyway, and the
    cache lives only in memory, bounded, for seconds.
    """

    def __init__(self, db: Database, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def cached(self, secret: str) -> tuple[bool, ApiKey | None]:
        """(hit, key) from the cache alone, for the synchronous hot path."""
        entry = self._cache.get(secret)
        if entry is not None and entry[0] > self._clock():
            return True, entry[1]
        return False, None

    def lookup(self, secret: str) -> ApiKey | None:
        """The key for `secret` (active or revoked), or None. Blocking: call off the event loop.

        While the database is unreachable an expired entry is still answered (a revocation
        cannot happen then either); a secret never seen raises DatabaseUnavailable.
        """
        if not plausible_secret(secret):
            return None
        entry = self._cache.get(secret)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        digest = hash_secret(secret)
        try:
            key = self._db.key_by_hash(digest)
        except DatabaseUnavailable:
            if entry is not None:  # the last answer stands while the database is unreachable
                return entry[1]
            raise
        if key is not None and not hmac.compare_digest(key.secret_hash, digest):
            key = None
        if len(self._cache) > 100_000:
            self._cache.clear()  # bounded: junk secrets cannot grow memory without limit
        self._cache[secret] = (self._clock() + self._ttl, key)
        return key

    def forget(self) -> None:
        self._cache.clear()


KEYS_UNAVAILABLE = "cannot check the API key right now: the key database is unreachable; retry shortly"


async def authenticate(keys: KeyRing, secret: str | None) -> tuple[ApiKey | None, str | None]:
    """(key, None) for an active key, else (None or the revoked key, the error to answer).

    Raises DatabaseUnavailable for a key this process has never seen while the database is
    down (callers answer 503: the key may well be valid)."""
    if not secret:
        return None, "missing API key: send Authorization: Bearer KEY or ?api_key=KEY"
    hit, key = keys.cached(secret)
    if not hit:
        key = await asyncio.to_thread(keys.lookup, secret)
    if key is None:
        return None, "invalid API key"
    if not key.active:
        return key, "API key revoked"
    return key, None


async def quota_for(meter: Meter, key: ApiKey) -> Quota:
    if not meter.knows(key.id):
        try:
            await meter.load(key.id)
        except DatabaseUnavailable:
            pass  # the month total is read again on the next request; counting goes on meanwhile
    return meter.quota(key.id, 0 if key.unlimited else key.monthly_limit)


def secret_from(headers: Sequence[tuple[str, str]], query: Sequence[tuple[str, str]]) -> str | None:
    """`Authorization: Bearer KEY`, else `?api_key=KEY` (header names lower-case)."""
    for name, value in headers:
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return next((v for n, v in query if n == "api_key" and v), None)
