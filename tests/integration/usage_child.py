"""A separate process for the usage tests: meter requests, or run one sync (optionally dying).

    python tests/integration/usage_child.py meter PROTOCOL COUNT [MINUTES_AGO]
    python tests/integration/usage_child.py sync [--kill-after-commit] [--now-offset S] [--sleep-before-delete S]

Settings come from the environment (REDIS_URL, BEAST_REDIS_NAMESPACE, DATABASE_URL), as for
`beast`. `--kill-after-commit` SIGKILLs this process right after the first batch commits,
before its cache key is deleted: the worst moment for a sync to die.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from trinity_beast.domain.settings import load_settings
from trinity_beast.services.meter import Meter
from trinity_beast.services.sync import options, sync_once
from trinity_beast.stores.cache import make_cache
from trinity_beast.stores.db import make_database


async def meter(protocol: str, count: int, minutes_ago: int) -> None:
    cache = make_cache(load_settings())
    m = Meter(cache)
    when = time.time() - 60 * minutes_ago
    for i in range(count):
        m.record(os.environ["TEST_KEY_ID"], "/price", "BTC", protocol, 200, 0.0005 + i * 1e-6, True, now=when)
    await m.flush()
    await cache.close()


async def sync(kill: bool, now_offset: float, pause: float) -> None:
    settings = load_settings()
    cache, db = make_cache(settings), make_database(settings)
    db.migrate()

    async def after_commit(batch_id: str) -> None:
        if kill:
            print(f"committed {batch_id}; dying before the delete", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(pause)

    result = await sync_once(cache, db, now=time.time() + now_offset, after_commit=after_commit, **options(settings))
    print(f"{result.buckets} {result.requests} {result.already_written}", flush=True)
    await cache.close()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("meter")
    p.add_argument("protocol")
    p.add_argument("count", type=int)
    p.add_argument("minutes_ago", type=int, nargs="?", default=0)
    p = sub.add_parser("sync")
    p.add_argument("--kill-after-commit", action="store_true")
    p.add_argument("--now-offset", type=float, default=0.0)
    p.add_argument("--sleep-before-delete", type=float, default=0.0)
    args = parser.parse_args()
    if args.cmd == "meter":
        asyncio.run(meter(args.protocol, args.count, args.minutes_ago))
    else:
        asyncio.run(sync(args.kill_after_commit, args.now_offset, args.sleep_before_delete))
    sys.exit(0)


if __name__ == "__main__":
    main()
