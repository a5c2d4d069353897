"""`beast serve`: everything one process runs, under one signal handler.

The feeds and prewarm, the LPO and LRS servers (HTTP, WebSocket, UDP) as the mode asks, the
usage flush and sync loop, and with `--workers N` the N-1 extra LPO processes that share the
ports. The argument parser and the other commands are in cli.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from trinity_beast.domain.settings import Settings
from trinity_beast.services.prices.ingest import start_feeds
from trinity_beast.services.prices.prewarm import prewarm, prewarm_stale
from trinity_beast.services.sync import options as sync_options
from trinity_beast.services.sync import run_sync
from trinity_beast.stores.db import make_database
from trinity_beast.transports.server import Listener, StartupError, bind_tcp, bind_udp, run_until_signal
from trinity_beast.transports.udp.lpo import UdpPriceServer

log = logging.getLogger("trinity_beast")


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    from trinity_beast.services.runtime import Runtime
    from trinity_beast.transports.http.lpo import build_lpo

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
        lpo_app = build_lpo(rt)
        # BEAST_SERVER: uvicorn or granian (which needs the WebSockets closed before it stops)
        listeners.append(Listener(lpo_app, lpo_sock, settings.server, lpo_app.hub.close_all))
    if lrs:
        from trinity_beast.transports.http.lrs import build_lrs

        listeners.append(Listener(build_lrs(rt), bind_tcp(settings.host, settings.lrs_port, "BEAST_LRS_PORT")))
    datagrams: list[tuple[Callable[[], asyncio.DatagramProtocol], Any]] = []
    if lpo:
        lpo_udp = bind_udp(settings.host, settings.lpo_udp_port, "BEAST_LPO_UDP_PORT", args.reuse_port)
        datagrams.append((lambda: UdpPriceServer(rt), lpo_udp))
    if lrs:
        from trinity_beast.transports.udp.lrs import UdpReportServer

        datagrams.append(
            (lambda: UdpReportServer(rt), bind_udp(settings.host, settings.lrs_udp_port, "BEAST_LRS_UDP_PORT"))
        )
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
    if lrs:
        shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        print(f"Command Center: http://{shown}:{settings.lrs_port}/admin (sign in with an admin key)", flush=True)
    settle_garbage_collector()
    try:
        await run_until_signal(listeners, settings.log_level, settings)
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

    if not args.reuse_port:
        probe_ports(args, settings)  # a busy port fails now, before a first admin key is made and shown
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


def probe_ports(args: argparse.Namespace, settings: Settings) -> None:
    """Bind and release every port `serve` will take; StartupError names the first one in use."""
    lpo = args.only in (None, "lpo")
    lrs = args.only == "lrs" or (args.only is None and settings.report_server)
    wanted = [(bind_tcp, settings.lpo_port, "BEAST_LPO_PORT")] if lpo or args.only == "feeds" else []
    wanted += [(bind_udp, settings.lpo_udp_port, "BEAST_LPO_UDP_PORT")] if lpo else []
    wanted += (
        [(bind_tcp, settings.lrs_port, "BEAST_LRS_PORT"), (bind_udp, settings.lrs_udp_port, "BEAST_LRS_UDP_PORT")]
        if lrs
        else []
    )
    for bind, port, setting in wanted:
        bind(settings.host, port, setting).close()


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
        raise StartupError(
            "--workers: more than one worker needs REDIS_URL (workers share prices and usage through Redis)"
        )
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
