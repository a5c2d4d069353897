"""Prometheus metrics (text format 0.0.4) for GET /metrics on the LPO and the LRS.

A small renderer rather than prometheus_client: the hot path is one dict update and a
bucket bump (no locks, no label objects), and every other figure (feeds, cache, usage,
sync, WebSocket) is read at scrape time from the objects that already keep it, through
collectors. Label values come from a closed set (known routes, protocols, statuses), so a
client requesting random paths cannot grow the series without limit.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# Latency buckets (seconds): sub-millisecond for cached answers up to a slow REST fallback.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
# One sample: (metric name, kind, help, labels, value). Collectors yield these.
Sample = tuple[str, str, str, Labels, float]
Collector = Callable[[], Iterable[Sample] | Awaitable[Iterable[Sample]]]


def sample(name: str, kind: str, help_: str, value: float, **labels: Any) -> Sample:
    return name, kind, help_, tuple((k, str(v)) for k, v in labels.items()), float(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


class _Histogram:
    __slots__ = ("counts", "n", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last slot is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float, count: int = 1) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += count
        self.total += seconds * count
        self.n += count


class Metrics:
    """Request counters and latency histograms, plus collectors read at scrape time."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str, int], int] = {}
        self._latency: dict[tuple[str, str, str], _Histogram] = {}
        self._collectors: dict[str, Collector] = {}
        self.started = time.time()

    def observe(self, service: str, endpoint: str, protocol: str, status: int, seconds: float, count: int = 1) -> None:
        """Count `count` answered requests that took `seconds` each (hot path: no awaits, no locks)."""
        key = (service, endpoint, protocol, status)
        self._requests[key] = self._requests.get(key, 0) + count
        hist = self._latency.get(key[:3])
        if hist is None:
            hist = self._latency[key[:3]] = _Histogram()
        hist.observe(seconds, count)

    def requests(self, service: str | None = None, endpoint: str | None = None, protocol: str | None = None) -> int:
        """Requests counted so far, optionally for one service, endpoint or protocol (tests, soak)."""
        return sum(
            n
            for (s, e, p, _), n in self._requests.items()
            if service in (None, s) and endpoint in (None, e) and protocol in (None, p)
        )

    def add_collector(self, name: str, collector: Collector) -> None:
        """`collector()` (sync or async) yields samples each time /metrics is scraped; one per name
        (a process serving the LPO and the LRS registers its runtime figures once)."""
        self._collectors.setdefault(name, collector)

    async def render(self) -> bytes:
        samples: list[Sample] = []
        for collector in self._collectors.values():
            try:
                produced = collector()
                if isinstance(produced, Awaitable):
                    produced = await produced
                samples.extend(produced)
            except Exception:  # one broken collector must not hide the others
                log.exception("metrics collector failed")
        return self._text(samples)

    def _text(self, samples: list[Sample]) -> bytes:
        out: list[str] = []
        self._request_lines(out)
        by_name: dict[str, list[Sample]] = {}
        for s in samples:
            by_name.setdefault(s[0], []).append(s)
        for name, group in by_name.items():
            _, kind, help_, _, _ = group[0]
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{_labels(labels)} {_number(value)}" for _, _, _, labels, value in group)
        return ("\n".join(out) + "\n").encode()

    def _request_lines(self, out: list[str]) -> None:
        out.append("# HELP beast_requests_total Requests answered, per service, endpoint, protocol and status.")
        out.append("# TYPE beast_requests_total counter")
        for (service, endpoint, protocol, status), n in sorted(self._requests.items()):
            labels: Labels = (
                ("service", service),
                ("endpoint", endpoint),
                ("protocol", protocol),
                ("status", str(status)),
            )
            out.append(f"beast_requests_total{_labels(labels)} {n}")
        out.append(
            "# HELP beast_request_duration_seconds Time to answer a request, per service, endpoint and protocol."
        )
        out.append("# TYPE beast_request_duration_seconds histogram")
        for (service, endpoint, protocol), hist in sorted(self._latency.items()):
            labels = (("service", service), ("endpoint", endpoint), ("protocol", protocol))
            running = 0
            for bound, count in zip((*BUCKETS, math.inf), hist.counts, strict=True):
                running += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                out.append(f"beast_request_duration_seconds_bucket{_labels(labels, (('le', le),))} {running}")
            out.append(f"beast_request_duration_seconds_sum{_labels(labels)} {hist.total!r}")
            out.append(f"beast_request_duration_seconds_count{_labels(labels)} {hist.n}")


def resident_memory_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
