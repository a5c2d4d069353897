"""How many /ws/prices connections one key, and one client address, may hold open at once.

Without a cap one leaked or shared key (or one address) could hold thousands of sockets and
the fan-out work behind them. Partner keys are exempt: they are never throttled, and many
partners may reach us through one PrivateLink address.
"""

from __future__ import annotations

from collections import Counter

from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.settings import Settings


class ConnectionLimits:
    """Open connections per key id and per client address, and how many were refused."""

    def __init__(self) -> None:
        self.per_key: Counter[str] = Counter()  # open connections per key id
        self.per_ip: Counter[str] = Counter()  # open connections per client address (non-partner keys)
        self.refused = 0  # connections refused by the per-key or per-address limit

    def refusal(self, key: ApiKey, ip: str, settings: Settings) -> str | None:
        """Why one more connection for this key from this address is refused (and counted), or None."""
        reason = self.over_limit(key, ip, settings)
        if reason is not None:
            self.refused += 1
        return reason

    def over_limit(self, key: ApiKey, ip: str, settings: Settings) -> str | None:
        if key.tier == "partner":
            return None
        if settings.ws_max_per_key and self.per_key[key.id] >= settings.ws_max_per_key:
            return f"too many connections for this key: at most {settings.ws_max_per_key} open at once"
        if settings.ws_max_per_ip and self.per_ip[ip] >= settings.ws_max_per_ip:
            return f"too many connections from {ip}: at most {settings.ws_max_per_ip} open at once"
        return None

    def opened(self, key: ApiKey, ip: str) -> None:
        self.per_key[key.id] += 1
        if key.tier != "partner":
            self.per_ip[ip] += 1

    def closed(self, key: ApiKey, ip: str) -> None:
        _release(self.per_key, key.id)
        if key.tier != "partner":
            _release(self.per_ip, ip)


def _release(counts: Counter[str], name: str) -> None:
    counts[name] -= 1
    if counts[name] <= 0:
        del counts[name]
