"""The Unified Messaging Envelope (UME): the one JSON shape of every answer.

Twelve fields in a fixed order, with the seed system's types and formats (its clients parse
them): `error` is "" on success, `timestamp` is UTC to the second with a `Z`, `language`
"en", `agent_profile_arn` arn:tbi:{region}:{account}:agent-profile/{profile}/v1. The static
parts (region, node, language, IP, ARN) are bound once per service so building an envelope
on the hot path is a dict literal and one orjson call.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from trinity_beast.domain.settings import Settings

FIELDS: tuple[str, ...] = (
    "status",
    "status_code",
    "endpoint",
    "cluster_node",
    "region",
    "language",
    "api_key_id",
    "ip_address",
    "agent_profile_arn",
    "timestamp",
    "data",
    "error",
)


@functools.lru_cache(maxsize=4096)
def _second(second: int, pattern: str) -> str:
    """strftime of one whole second: every answer formats timestamps, most within a few seconds."""
    return datetime.fromtimestamp(second, tz=UTC).strftime(pattern)


def utc_iso(ts: float | None = None) -> str:
    """UTC ISO-8601 to the second with a `Z` (`2026-05-29T22:00:00Z`), the seed's one format.

    Truncated, so it always names the same second as `unix_seconds(ts)`."""
    return _second(unix_seconds(time.time() if ts is None else ts), "%Y-%m-%dT%H:%M:%SZ")


def unix_seconds(ts: float) -> int:
    """Whole Unix seconds (the seed's integer `timestamp`), truncated like utc_iso."""
    return int(ts // 1)


def unix_ms(ts: float) -> int:
    """Whole Unix milliseconds: the precision the seed's fields leave out, for added `*_ms` fields."""
    return int(ts * 1000 // 1)


# The one rule for the status line's service tag: it names the server a route belongs to,
# whichever process or Lambda function answers it (the assets function answers the LPO's
# GET /ws/assets, so it says LPO; a feeds-only process, `beast serve --only feeds`, says
# FEEDS). Each tag has its agent profile kind (settings.AGENT_PROFILES): the feeds process
# belongs to the price service; the LRS's partner routes use the `partners` kind.
SERVICE_PROFILES: dict[str, str] = {"LPO": "prices", "WS": "ws", "LRS": "reports", "FEEDS": "prices"}


def agent_profile_arn(settings: Settings, kind: str) -> str:
    """`arn:tbi:{region}:{account}:agent-profile/{profile}/v1` for one profile kind."""
    profile = settings.agent_profiles[kind]
    return f"arn:tbi:{settings.region}:{settings.agent_account_id}:agent-profile/{profile}/v1"


@dataclass(frozen=True, slots=True)
class Envelopes:
    """Builds envelopes for one service tag (LPO, WS, LRS) and agent profile."""

    service: str
    region: str
    cluster_node: str
    language: str
    ip_address: str
    agent_profile_arn: str

    @classmethod
    def for_service(cls, settings: Settings, service: str, profile: str | None = None) -> Envelopes:
        """The envelopes of `service` (a SERVICE_PROFILES tag), with its own or the given profile kind."""
        if service not in SERVICE_PROFILES:
            raise ValueError(f"unknown service tag {service!r}: expected one of {', '.join(SERVICE_PROFILES)}")
        return cls(
            service=service,
            region=settings.region,
            cluster_node=settings.cluster_node,
            language=settings.language,
            ip_address=settings.ip_address,
            agent_profile_arn=agent_profile_arn(settings, profile or SERVICE_PROFILES[service]),
        )

    def status_line(self, endpoint: str, status_code: int) -> str:
        mark = "✅" if status_code < 400 else "❌"
        return f"{mark} [{self.service}] [{self.region}] [{self.cluster_node}] [{endpoint}] [{status_code}]"

    def per_request(self, api_key_id: str | None) -> dict[str, Any]:
        """The envelope fields that differ from one answer to the next (the rest is fixed per
        service, endpoint and status): what a prebuilt answer splices in (services/prices/splice.py)."""
        return {"api_key_id": api_key_id, "timestamp": utc_iso()}

    def build(
        self,
        endpoint: str,
        status_code: int,
        data: Any = None,
        error: str | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        fresh = self.per_request(api_key_id)
        return {
            "status": self.status_line(endpoint, status_code),
            "status_code": status_code,
            "endpoint": endpoint,
            "cluster_node": self.cluster_node,
            "region": self.region,
            "language": self.language,
            "api_key_id": fresh["api_key_id"],
            "ip_address": self.ip_address,
            "agent_profile_arn": self.agent_profile_arn,
            "timestamp": fresh["timestamp"],
            "data": data,
            "error": error or "",  # the seed's clients read "" as success, never null
        }

    def ok(self, endpoint: str, data: Any, api_key_id: str | None = None, status_code: int = 200) -> dict[str, Any]:
        return self.build(endpoint, status_code, data=data, api_key_id=api_key_id)

    def error(
        self, endpoint: str, status_code: int, message: str, api_key_id: str | None = None, data: Any = None
    ) -> dict[str, Any]:
        return self.build(endpoint, status_code, data=data, error=message, api_key_id=api_key_id)


def dumps(envelope: dict[str, Any]) -> bytes:
    """Serialize an envelope (or any answer) the one way the project does it."""
    return orjson.dumps(envelope)
