"""Companion to soak.py: is RSS growth Python objects piling up, or the allocator?

Runs the LPO in this process (simulator, feeds, embedded stores) under the same kind of
churn as soak.py (HTTP, WebSocket clients coming and going, UDP, exchanges misbehaving),
with tracemalloc on. After a warm-up it snapshots the traced Python heap, runs on, snapshots
again and prints the totals and the biggest growth by traceback. A leak shows as a steadily
growing total with one traceback on top; a flat total means RSS movement is the allocator.

    .venv/bin/python bench/soak_tracemalloc.py --minutes 3
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from support import UNREACHABLE_EXCHANGES, in_process_server

ASSETS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LINK"]
EXCHANGES = ["coinbase", "kraken", "gemini", "gateio", "cryptocom", "okx"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    args = parser.parse_args()
    tracemalloc.start(12)
    env = {"BEAST_DATA_DIR": tempfile.mkdtemp(), "BEAST_IP_ADDRESS": "127.0.0.1", **UNREACHABLE_EXCHANGES}
    stop = threading.Event()
    with in_process_server(env, sim=True, feeds=True) as srv:
        key = srv.admin_key

        def http() -> None:
            with httpx.Client(base_url=srv.url, timeout=10) as c:
                while not stop.is_set():
                    c.get(f"/price?asset={random.choice(ASSETS)}", headers={"Authorization": f"Bearer {key}"})

        def ws() -> None:
            url = srv.url.replace("http://", "ws://") + f"/ws/prices?api_key={key}"
            while not stop.is_set():
                try:
                    with connect(url) as w:
                        w.send(json.dumps({"subscribe": random.sample(ASSETS, 3)}))
                        end = time.time() + random.uniform(0.5, 2)
                        while time.time() < end:
                            try:
                                w.recv(0.5)
                            except TimeoutError:
                                pass
                except Exception:
                    time.sleep(0.2)

        def udp() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                while not stop.is_set():
                    s.sendto(json.dumps({"asset": "BTC", "api_key": key}).encode(), ("127.0.0.1", srv.udp_port))
                    try:
                        s.recvfrom(4096)
                    except OSError:
                        pass

        def chaos() -> None:
            while not stop.is_set():
                exchange, mode = random.choice(EXCHANGES), random.choice(["drop", "silent", "garbage", "down", "flood"])
                srv.sim.set_mode(exchange, mode)
                if mode == "down":
                    srv.sim.drop(exchange)
                time.sleep(random.uniform(3, 6))
                srv.sim.reset()
                time.sleep(2)

        for target in (http, http, ws, ws, ws, ws, udp, chaos):
            threading.Thread(target=target, daemon=True).start()
        time.sleep(args.warmup_s)
        gc.collect()
        first, first_total = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
        time.sleep(args.minutes * 60)
        gc.collect()
        last, last_total = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
        stop.set()
        print(
            f"traced Python heap: {first_total / 2**20:.1f} MB -> {last_total / 2**20:.1f} MB "
            f"over {args.minutes:g} min; WS clients now {len(srv.app.hub.clients)}, runtime tasks {len(srv.rt._tasks)}"
        )
        for stat in last.compare_to(first, "traceback")[:5]:
            print(stat)


if __name__ == "__main__":
    main()
