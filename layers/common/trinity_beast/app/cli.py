"""`beast`: the one command line entry point (serve, migrate, keys, …)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence

import orjson

from trinity_beast.app.serve import cmd_serve
from trinity_beast.app.startup import EXIT_FAILURE, check_host, check_sqlite, one_line
from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import TIERS, KeyRequestError, new_key
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import Settings
from trinity_beast.domain.text import whole_number
from trinity_beast.services.sync import options as sync_options
from trinity_beast.services.sync import run_sync
from trinity_beast.stores.cache.base import CacheUnavailable
from trinity_beast.stores.db import make_database
from trinity_beast.stores.environment import load_settings
from trinity_beast.transports.server import StartupError, bind_tcp

log = logging.getLogger("trinity_beast")


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    from beast_sim import serve as serve_sim
    from beast_sim import sim_env

    # Take the port first, so a busy port or a foreign address is one line (exit 2), not a
    # success message followed by a traceback.
    bind_tcp(args.host, args.port, "--port").close()
    print(f"exchange simulator on {args.host}:{args.port}; point beast at it with:", flush=True)
    for name, value in sim_env(args.host, args.port).items():
        print(f"  export {name}={value}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_sim(args.host, args.port))
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from trinity_beast.services.sync import sync_once
    from trinity_beast.stores.cache import make_cache

    if not settings.redis_url:
        print(
            "beast sync: no REDIS_URL, so usage counters live inside `beast serve` (the embedded memory"
            " cache), which syncs them itself; nothing to do here.",
            file=sys.stderr,
        )
        return 0

    async def run() -> None:
        db = make_database(settings)
        cache = make_cache(settings)
        try:
            await asyncio.to_thread(db.migrate)
            if args.every is not None:
                await run_sync(cache, db, args.every, **sync_options(settings))
            result = await sync_once(cache, db, **sync_options(settings))
            print(result.summary(), flush=True)
        finally:
            await cache.close()
            db.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    db = make_database(settings)
    try:
        applied = db.migrate()
        names = db.applied_migrations()
    finally:
        db.close()
    print(f"{db.dialect}: applied {len(applied)} new migration(s); schema at {names[-1] if names else 'none'}")
    for name in applied:
        print(f"  + {name}")
    return 0


def _iso(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    db = make_database(settings)
    try:
        db.migrate()
        if args.keys_command == "create":
            try:
                key, secret = new_key(args.name, args.tier, args.monthly_limit)
            except KeyRequestError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            db.insert_key(key)
            if args.json:
                print(orjson.dumps({**key.public(), "key": secret}).decode())
            else:
                print(f"id:   {key.id}")
                print(f"key:  {secret}")
                print(f"tier: {key.tier}  monthly limit: {key.monthly_limit or 'unlimited'}")
                print("The key is shown once and stored only as a hash: keep it now.")
            return 0
        if args.keys_command == "list":
            keys = db.list_keys()
            if args.json:
                print(orjson.dumps([k.public() for k in keys]).decode())
                return 0
            print(f"{'ID':<20} {'TIER':<10} {'LIMIT':>10} {'CREATED':<20} {'REVOKED':<20} NAME")
            for k in keys:
                print(
                    f"{k.id:<20} {k.tier:<10} {k.monthly_limit or 'unlimited':>10} "
                    f"{_iso(k.created_at):<20} {_iso(k.revoked_at):<20} {k.name}"
                )
            return 0
        if args.keys_command == "revoke":
            if db.revoke_key(args.id, time.time()):
                print(f"revoked {args.id}")
                return 0
            print(f"error: no active key with id {args.id!r}", file=sys.stderr)
            return 1
    finally:
        db.close()
    return 2


MAX_MONTHLY_LIMIT = 2**62  # stored as a 64-bit integer by both databases


def _non_negative_int(raw: str) -> int:
    value = whole_number(raw.strip())
    if raw.strip().startswith("-") and whole_number(raw.strip()[1:]) is not None:
        raise argparse.ArgumentTypeError("expected 0 (unlimited) or more")
    digits = raw.strip().isascii() and raw.strip().isdigit()
    if value is None and not digits:
        raise argparse.ArgumentTypeError(f"expected a whole number (digits 0-9), got {raw!r}")
    if value is None or value > MAX_MONTHLY_LIMIT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_MONTHLY_LIMIT} (0 = unlimited), got {raw!r}")
    return value


MAX_WORKERS = 64


def _workers(raw: str) -> int:
    value = whole_number(raw.strip())
    if value is None or not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_WORKERS} (one per core), got {raw!r}")
    return value


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("expected a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beast",
        description="Trinity Beast: real-time cryptocurrency prices over HTTP, UDP and WebSocket.",
        epilog="Settings come from environment variables: see docs/configuration.md.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`beast COMMAND --help` for its options"
    )

    p = sub.add_parser(
        "serve",
        help="run the price server (embedded default, or Redis/PostgreSQL when REDIS_URL/DATABASE_URL are set)",
    )
    p.add_argument(
        "--sim",
        action="store_true",
        help="start the exchange simulator in-process and point every exchange at it (no internet needed)",
    )
    p.add_argument("--sim-port", type=int, default=0, help="simulator port with --sim (default: any free port)")
    p.add_argument(
        "--only",
        choices=("lpo", "lrs", "feeds"),
        default=None,
        help="serve only the price server (lpo: feeds unless BEAST_FEEDS is off, HTTP/WS, UDP), only the report"
        " server (lrs), or only the exchange feeds into Redis (feeds: with /health and /ready on the LPO port);"
        " default: LPO, plus LRS when APP_REPORT_SERVER is on",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="LPO processes sharing the ports, one per core (needs REDIS_URL when more than 1)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set on worker processes
    p.add_argument(
        "--no-sync",
        action="store_true",
        help="leave the usage sync to a separate job (the sync Lambda function or `beast sync --every N`)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("sim", help="run the exchange simulator: all six exchanges' WS and REST protocols on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=9700, help="port of every exchange's WS and REST endpoints (default: 9700)"
    )
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser(
        "sync",
        help="move closed usage minutes from the cache into the database (once, or --every N seconds)",
        description=(
            "Moves closed minute buckets of usage counters from Redis into the database exactly once, "
            "applies retention (BEAST_USAGE_MINUTE_DAYS, BEAST_USAGE_HOUR_DAYS). Safe to kill at any "
            "point and to run several at once. `beast serve` also runs it every BEAST_SYNC_EVERY_S."
        ),
    )
    p.add_argument("--every", type=_positive_seconds, default=None, metavar="N", help="keep syncing every N seconds")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("keys", help="create, list and revoke API keys")
    p.set_defaults(func=cmd_keys)
    keys = p.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", help="`beast keys ACTION --help` for its options"
    )
    k = keys.add_parser("create", help="create a key; prints its id and its secret once")
    k.add_argument("--name", required=True, help="who or what the key is for")
    k.add_argument(
        "--tier",
        required=True,
        choices=TIERS,
        help="partner: unlimited; subscriber: limited per month; admin: every key's reports, partners",
    )
    k.add_argument("--monthly-limit", type=_non_negative_int, default=None, help="requests per month, 0 = unlimited")
    k.add_argument("--json", action="store_true", help="print one JSON object with id and key")
    k = keys.add_parser("list", help="list keys (never their secrets)")
    k.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    k = keys.add_parser("revoke", help="revoke a key by its public id")
    k.add_argument("id", help="the key's public id (ak_…)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"beast: invalid setting {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per exchange call is noise
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment variables" is noise too
    try:
        if args.command == "serve":
            if args.only == "feeds":  # refused before anything is created
                from trinity_beast.app.feeds_only import check_settings

                check_settings(settings, args.workers)
            check_host(settings.host)  # before anything is created (the first admin key)
        if args.command in ("serve", "migrate", "keys"):
            check_sqlite(settings)
        return int(args.func(args, settings) or 0)
    except (ConfigError, StartupError, DatabaseUnavailable, CacheUnavailable) as exc:
        print(one_line(exc), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
