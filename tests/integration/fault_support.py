"""Helpers the fault tests share: reading usage straight from Redis, waiting for a condition."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis
from support import REDIS_URL

from trinity_beast.domain.usage import MINUTE_PREFIX, MONTH_PREFIX, parse_bucket


def counted(namespace: str, key_id: str) -> tuple[Counter, int]:
    """Requests per (protocol, status) for `key_id` in every minute bucket, and its month total."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        per: Counter = Counter()
        for raw in client.scan_iter(match=f"{namespace}:{MINUTE_PREFIX}*", count=1000):
            fields = {f.decode(): int(v) for f, v in client.hgetall(raw).items()}
            for group, counts in parse_bucket(fields).items():
                if group.api_key_id == key_id:
                    per[(group.protocol, group.status)] += counts.n
        month = 0
        for raw in client.scan_iter(match=f"{namespace}:{MONTH_PREFIX}*", count=100):
            month += int(client.hget(raw, key_id) or 0)
        return per, month
    finally:
        client.close()


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
