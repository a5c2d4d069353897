"""Write ticks into Redis at a fixed total rate, round-robin over assets; prints how many it wrote.

`REDIS_URL NAMESPACE ASSETS RATE SECONDS`: the WebSocket figure's publisher, in its own process
so bench/run.py can pin it with the load clients. Ticks come from the priority exchange, so
each one is the served price and is pushed to every subscriber.
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal

from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache.redis import RedisCache


async def publish(url: str, namespace: str, assets: list[str], rate: float, seconds: float) -> int:
    cache = RedisCache(url, namespace=namespace)
    sent = 0
    start = time.perf_counter()
    total = int(rate * seconds)
    while sent < total:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.time()
        asset = assets[sent % len(assets)]
        await cache.put_tick(Tick(asset, "USD", Decimal(60000 + sent % 1000), None, None, "coinbase", now, now))
        sent += 1
    await cache.close()
    return sent


if __name__ == "__main__":
    url, namespace, assets, rate, seconds = sys.argv[1:6]
    print(asyncio.run(publish(url, namespace, assets.split(","), float(rate), float(seconds))))
