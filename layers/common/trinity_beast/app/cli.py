"""`beast`: the one command line entry point (serve, migrate, keys, …)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Sequence

import orjson

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.keys import TIERS, KeyRequestError, new_key
from trinity_beast.domain.settings import ConfigError, Settings
from trinity_beast.services.prices.ingest import start_feeds
from trinity_beast.services.prices.prewarm import prewarm, prewarm_stale
from trinity_beast.services.sync import options as sync_options
from trinity_beast.services.sync import run_sync
from trinity_beast.stores.db import make_database
from trinity_beast.stores.environment import load_settings
from trinity_beast.transports.server import Listener, StartupError, bind_tcp, bind_udp, run_until_signal
from trinity_beast.transports.udp.lpo import UdpPriceServer

log = logging.getLogger("trinity_beast")


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    from trinity_beast.transports.http.lpo import build_lpo
    from trinity_beast.services.runtime import Runtime

    sim = None
    if args.sim:
        from beast_sim import Simulator

        sim = await Simulator(host="127.0.0.1", port=args.sim_port).start()
        settings = dataclasses.replace(settings, ws_url_overrides=sim.ws_urls, rest_url_overrides=sim.rest_urls)
        log.info("exchange simulator on 127.0.0.1:%d: every exchange points at it", sim.port)
    rt = await asyncio.to_thread(Runtime.create, settings)
    if sim is not None:
        rt.on_stop(sim.stop)
    feeds_only = args.only == "feeds"
    lpo = args.only in (None, "lpo")
    lrs = args.only == "lrs" or (args.only is None and settings.report_server)
    listeners = []
    if feeds_only:
        from trinity_beast.app.feeds_only import build_feeds_app

        listeners.append(Listener(build_feeds_app(rt), bind_tcp(settings.host, settings.lpo_port, "BEAST_LPO_PORT")))
    if lpo:
        lpo_sock = bind_tcp(settings.host, settings.lpo_port, "BEAST_LPO_PORT", args.reuse_port)
        listeners.append(Listener(build_lpo(rt), lpo_sock, settings.server))  # BEAST_SERVER: uvicorn or granian
    if lrs:
        from trinity_beast.transports.http.lrs import build_lrs

        listeners.append(Listener(build_lrs(rt), bind_tcp(settings.host, settings.lrs_port, "BEAST_LRS_PORT")))
    datagrams: list[tuple[Callable[[], asyncio.DatagramProtocol], Any]] = []
    if lpo:
        lpo_udp = bind_udp(settings.host, settings.lpo_udp_port, "BEAST_LPO_UDP_PORT", args.reuse_port)
        datagrams.append((lambda: UdpPriceServer(rt), lpo_udp))
    if lrs:
        from trinity_beast.transports.udp.lrs import UdpReportServer

        datagrams.append((lambda: UdpReportServer(rt), bind_udp(settings.host, settings.lrs_udp_port, "BEAST_LRS_UDP_PORT")))
    await rt.start()
    for protocol, sock in datagrams:
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(protocol, sock=sock)
        rt.on_stop(_closer(udp))
    if not args.no_sync and not feeds_only:
        rt.spawn(
            run_sync(
                rt.cache,
                rt.db,
                settings.sync_every_s,
                prewarm=(lambda: prewarm_stale(rt.rest, rt.live, rt.cache)) if settings.prewarm else None,
                **sync_options(settings),
            ),
            "usage-sync",
        )
    if (lpo or feeds_only) and settings.feeds:
        await start_feeds(rt)
    if (lpo or feeds_only) and settings.prewarm:
        rt.spawn(prewarm(rt.rest), "prewarm")
    parts = [f"LPO http://{settings.host}:{settings.lpo_port} and udp {settings.lpo_udp_port}"] if lpo else []
    if feeds_only:
        parts.append(f"feeds into the cache, /health and /ready on http://{settings.host}:{settings.lpo_port}")
    elif lpo and not settings.feeds:
        parts.append("no exchange feeds here (BEAST_FEEDS off): prices come through the cache")
    parts += [f"LRS http://{settings.host}:{settings.lrs_port} and udp {settings.lrs_udp_port}"] if lrs else []
    log.info(
        "serving: %s (cache %s, database %s%s)",
        ", ".join(parts),
        "redis" if settings.redis_url else "memory",
        rt.db.dialect,
        "" if not (args.no_sync or feeds_only) else ", usage sync left to a separate job",
    )
    settle_garbage_collector()
    try:
        await run_until_signal(listeners, settings.log_level)
    finally:
        log.info("stopping: connections drained, flushing usage")
        await rt.stop()
        log.info("stopped")


def settle_garbage_collector() -> None:
    """Full collections of everything built at start-up made the tail latency (~30 ms pauses):
    freeze what exists now out of the collector's sight and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _closer(transport: asyncio.BaseTransport) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        transport.close()

    return close


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from trinity_beast.app.first_admin import first_start

    if args.only == "feeds":
        from trinity_beast.app.feeds_only import check_settings

        check_settings(settings, args.workers)
    db = make_database(settings)
    try:
        db.migrate()
        lines = [] if args.only == "feeds" else first_start(settings, db)  # serving processes make the key
    finally:
        db.close()
    if lines:
        print("\n".join(lines), flush=True)
    workers = start_workers(args, settings)
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.run
    try:
        runner(serve(settings, args))
    finally:
        stop_workers(workers)
    return 0


def start_workers(args: argparse.Namespace, settings: Settings) -> list[subprocess.Popen[bytes]]:
    """`--workers N`: N-1 more LPO processes on the same ports (SO_REUSEPORT), one per core.

    This process stays the one that runs the feeds, the sync and the LRS; the others only
    answer (HTTP, WebSocket, UDP). They share prices and usage through Redis, so more than
    one worker needs REDIS_URL.
    """
    if args.workers < 1:
        raise StartupError(f"--workers: expected 1 or more, got {args.workers}")
    if args.workers == 1:
        return []
    if not settings.redis_url:
        raise StartupError("--workers: more than one worker needs REDIS_URL (workers share prices and usage through Redis)")
    args.reuse_port = True
    env = {**os.environ, "BEAST_FEEDS": "false", "BEAST_PREWARM": "false"}
    command = [sys.executable, "-m", "trinity_beast", "serve", "--only", "lpo", "--no-sync", "--reuse-port"]
    return [subprocess.Popen(command, env=env) for _ in range(args.workers - 1)]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    from beast_sim import serve as serve_sim
    from beast_sim import sim_env

    print(f"exchange simulator on {args.host}:{args.port}; point beast at it with:", flush=True)
    for name, value in sim_env(args.host, args.port).items():
        print(f"  export {name}={value}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_sim(args.host, args.port))
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from trinity_beast.stores.cache import make_cache
    from trinity_beast.services.sync import sync_once

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


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected 0 (unlimited) or more")
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        type=int,
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

    p = sub.add_parser(
        "sim", help="run the exchange simulator: all six exchanges' WS and REST protocols on loopback"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9700)
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
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys.add_parser("create", help="create a key; prints its id and its secret once")
    k.add_argument("--name", required=True, help="who or what the key is for")
    k.add_argument("--tier", required=True, choices=TIERS)
    k.add_argument(
        "--monthly-limit", type=_non_negative_int, default=None, help="requests per month, 0 = unlimited"
    )
    k.add_argument("--json", action="store_true", help="print one JSON object with id and key")
    k = keys.add_parser("list", help="list keys (never their secrets)")
    k.add_argument("--json", action="store_true")
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
        return int(args.func(args, settings) or 0)
    except (StartupError, DatabaseUnavailable) as exc:
        print(f"beast: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
