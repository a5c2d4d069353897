"""Counting and metering each price update that reaches a /ws/prices client.

An update reaches a client two ways, written straight to its socket by the fan-out or sent by
its writer from the queue; both must count it once, bill it to the key as protocol "ws" and
time it in GET /metrics, so both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from trinity_beast.services.meter import Meter
from trinity_beast.services.metrics import Metrics
from trinity_beast.transports.ws.frames import ENDPOINT


@dataclass(eq=False)
class Deliveries:
    meter: Meter
    metrics: Metrics
    count: int = 0  # updates delivered since start

    def one(self, key_id: str, asset: str, latency: float, billable: bool = True) -> None:
        """One update sent by a client's writer (`billable` False: its unit was reserved already)."""
        self.count += 1
        self.meter.record(key_id, ENDPOINT, asset, "ws", 200, latency, billable)
        self.metrics.observe("WS", ENDPOINT, "ws", 200, latency)

    def pushed(self, asset: str, per_key: dict[str, int], latency: float) -> None:
        """One update written straight to the sockets of several clients, counted per key."""
        for key_id, count in per_key.items():
            self.meter.record(key_id, ENDPOINT, asset, "ws", 200, latency, True, count=count)
        delivered = sum(per_key.values())
        self.count += delivered
        self.metrics.observe("WS", ENDPOINT, "ws", 200, latency, count=delivered)
