"""Who is asking: secrets to keys (with a short in-process cache) and where a key stands this month.

Every route and protocol authenticates here, so a key is checked the same way everywhere.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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
INVALID_KEY = "invalid API key"  # unknown and revoked alike: a stranger learns nothing about which keys exist
MALFORMED_AUTHORIZATION = "malformed Authorization header: expected Authorization: Bearer KEY"
# What a caller without a key is told, in the terms of its own protocol.
MISSING_KEY = {
    "http": "missing API key: send Authorization: Bearer KEY or ?api_key=KEY",
    "ws": 'missing API key: connect with Authorization: Bearer KEY or ?api_key=KEY, or send {"auth": KEY} first',
    "udp": 'missing API key: put "api_key": "KEY" in the datagram',
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where a request's key came from, after the one rule (`credentials`).

    `problem` is set when the Authorization header is present but malformed: the request is
    refused (401), never retried with a key from elsewhere.
    """

    secret: str | None
    problem: str | None = None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def credentials(headers: Iterable[tuple[str | bytes, str | bytes]], fallback: str | None) -> Credentials:
    """The one key rule for every route and protocol.

    `Authorization: Bearer KEY` wins; an Authorization header in any other shape (another
    scheme, no token, several headers) is a 401; only without the header does the
    query's or payload's key (`fallback`) count. Header names may be str or bytes, any case.
    """
    found = [_text(value) for name, value in headers if _text(name).lower() == "authorization"]
    if not found:
        return Credentials(fallback or None)
    if len(found) > 1:
        return Credentials(None, MALFORMED_AUTHORIZATION)
    scheme, _, token = found[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or len(token.split()) != 1:  # no token, or whitespace inside it
        return Credentials(None, MALFORMED_AUTHORIZATION)
    return Credentials(token)


async def authenticate(
    keys: KeyRing, given: Credentials | str | None, protocol: str = "http"
) -> tuple[ApiKey | None, str | None]:
    """(key, None) for an active key, else (None, the error to answer: 401).

    Unknown and revoked keys get the same INVALID_KEY. Raises DatabaseUnavailable for a key
    this process has never seen while the database is down (callers answer 503: the key may
    well be valid)."""
    creds = given if isinstance(given, Credentials) else Credentials(given or None)
    if creds.problem is not None:
        return None, creds.problem
    secret = creds.secret
    if not secret:
        return None, MISSING_KEY.get(protocol, MISSING_KEY["http"])
    hit, key = keys.cached(secret)
    if not hit:
        key = await asyncio.to_thread(keys.lookup, secret)
    if key is None or not key.active:
        return None, INVALID_KEY
    return key, None


async def quota_for(meter: Meter, key: ApiKey) -> Quota:
    if not meter.knows(key.id):
        try:
            await meter.load(key.id)
        except DatabaseUnavailable:
            pass  # the month total is read again on the next request; counting goes on meanwhile
    return meter.quota(key.id, 0 if key.unlimited else key.monthly_limit)


def secret_from(headers: Sequence[tuple[str, str]], query: Sequence[tuple[str, str]]) -> Credentials:
    """`credentials` for (name, value) query pairs: the header, else the first `api_key`."""
    return credentials(headers, next((v for n, v in query if n == "api_key" and v), None))
