"""The Unified Messaging Envelope (UME): the one JSON shape of every answer.

Twelve fields in a fixed order. The static parts (region, node, language, IP, ARN) are
bound once per service so building an envelope on the hot path is a dict literal and one
orjson call.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import datetime, timezone
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
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime(pattern)


def utc_iso(ts: float | None = None) -> str:
    """UTC ISO-8601 with millisecond precision and a `Z`."""
    ms = int((time.time() if ts is None else ts) * 1000)
    second, rest = divmod(ms, 1000)
    return f"{_second(second, '%Y-%m-%dT%H:%M:%S')}.{rest:03d}Z"


def utc_readable(ts: float) -> str:
    """A timestamp a person reads at a glance: `2026-11-23 15:10:34 UTC`."""
    return _second(int(ts // 1), "%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Envelopes:
    """Builds envelopes for one service label (LPO, LRS, WS, UDP)."""

    service: str
    region: str
    cluster_node: str
    language: str
    ip_address: str
    agent_profile_arn: str

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> "Envelopes":
        return cls(
            service=service,
            region=settings.region,
            cluster_node=settings.cluster_node,
            language=settings.language,
            ip_address=settings.ip_address,
            agent_profile_arn=settings.agent_profile_arn,
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
            "error": error,
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
