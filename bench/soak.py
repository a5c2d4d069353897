"""Soak run: minutes of churning clients against `beast serve` while the exchanges misbehave.

Not part of CI (it takes minutes); its last result is recorded in bench/SOAK.md.

    .venv/bin/python bench/soak.py --minutes 5 [--json bench/soak-last.json]

It starts `beast sim` (the six exchanges, switchable over HTTP) and `beast serve` pointed at
it, as child processes (REDIS_URL / DATABASE_URL from the environment are used when set;
otherwise the embedded default). Then, until the time is up:

- WebSocket clients connect, subscribe to a few assets, read for a few seconds and leave;
- HTTP clients ask /price for random assets (one or several), UDP clients the same;
- a chaos loop switches a random exchange to drop, silent, garbage, down, flood or a clock far
  off for 5-15 s, then back to normal;
- every 10 s: the server's RSS (from /proc), each feed's state, answers by status, errors.

At the end the chaos stops and every feed must be connected and fresh again within the
watchdog period (no stuck feed); the RSS trend over the run (after a warm-up) must be flat.
Exit status 0 when both hold and no answer was a 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

EXCHANGES = ("coinbase", "kraken", "gemini", "gateio", "cryptocom", "okx")
FAULTS = ("drop", "silent", "garbage", "down", "flood", "skew")
ASSETS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LINK", "AVAX", "DOT", "LTC", "BCH", "UNI", "AAVE", "XLM")
WARMUP_S = 30.0
RECOVERY_S = 60.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    ys = [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=False)) / den if den else 0.0


class Soak:
    def __init__(self, minutes: float, ws_clients: int, http_clients: int, seed: int) -> None:
        self.duration = minutes * 60
        self.ws_clients = ws_clients
        self.http_clients = http_clients
        self.rng = random.Random(seed)
        self.answers: Counter[str] = Counter()  # "http 200", "udp 200", "ws price", ...
        self.errors: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.chaos_log: list[str] = []
        self.stop = asyncio.Event()
        self.tmp = Path(tempfile.mkdtemp(prefix="beast-soak-"))
        self.procs: list[subprocess.Popen] = []

    # ---- processes -------------------------------------------------------------------------------
    def start(self) -> None:
        self.sim_port = free_port()
        beast = [sys.executable, "-m", "trinity_beast"]
        sim = subprocess.Popen(
            [*beast, "sim", "--port", str(self.sim_port)],
            stdout=subprocess.PIPE,
            text=True,
            stderr=open(self.tmp / "sim.err", "w"),
        )
        self.procs.append(sim)
        env_lines = []
        for line in sim.stdout:  # type: ignore[union-attr]
            if line.strip().startswith("export "):
                env_lines.append(line.strip()[7:])
            if len(env_lines) == 12:
                break
        env = {**os.environ, **dict(item.split("=", 1) for item in env_lines)}
        self.lpo_port, self.udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        env.update(
            {
                "BEAST_DATA_DIR": str(self.tmp / "data"),
                "BEAST_LPO_PORT": str(self.lpo_port),
                "BEAST_LRS_PORT": str(free_port()),
                "BEAST_LPO_UDP_PORT": str(self.udp_port),
                "BEAST_LRS_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
                "BEAST_LOG_LEVEL": "WARNING",
                "BEAST_IP_ADDRESS": "127.0.0.1",
            }
        )
        if env.get("REDIS_URL"):
            env.setdefault("BEAST_REDIS_NAMESPACE", "soak" + os.urandom(4).hex())
        out = open(self.tmp / "serve.out", "w")
        self.serve = subprocess.Popen([*beast, "serve"], env=env, stdout=out, stderr=open(self.tmp / "serve.err", "w"))
        self.procs.append(self.serve)
        self.base = f"http://127.0.0.1:{self.lpo_port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            text = (self.tmp / "serve.out").read_text()
            found = re.search(r"key: (tbk_\S+)", text)
            if found:
                try:
                    if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                        self.key = found.group(1)
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise SystemExit(f"beast serve did not start: {(self.tmp / 'serve.err').read_text()[-2000:]}")

    def finish(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    # ---- load ----------------------------------------------------------------------------------------
    async def ws_churn(self) -> None:
        url = self.base.replace("http://", "ws://") + f"/ws/prices?api_key={self.key}"
        while not self.stop.is_set():
            try:
                async with connect(url, open_timeout=10) as ws:
                    await ws.send(json.dumps({"subscribe": self.rng.sample(ASSETS, self.rng.randint(1, 8))}))
                    until = time.monotonic() + self.rng.uniform(1, 6)
                    while time.monotonic() < until and not self.stop.is_set():
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 1))
                        except TimeoutError:
                            continue
                        code = msg.get("status_code")
                        self.answers["ws price" if code == 200 else f"ws {code}"] += 1
                        if code is not None and code >= 500:
                            self.errors[f"ws {code}"] += 1
            except Exception as exc:  # counted, never fatal: the soak goes on
                self.errors[f"ws {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)

    async def http_load(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=15) as c:
            while not self.stop.is_set():
                assets = ",".join(self.rng.sample(ASSETS, self.rng.choice((1, 1, 1, 3))))
                query = f"/price?asset={assets}" + ("&aggregate=median" if self.rng.random() < 0.2 else "")
                try:
                    r = await c.get(query, headers={"Authorization": f"Bearer {self.key}"})
                    self.answers[f"http {r.status_code}"] += 1
                    if r.status_code >= 500:
                        self.errors[f"http {r.status_code}"] += 1
                except Exception as exc:
                    self.errors[f"http {type(exc).__name__}"] += 1
                await asyncio.sleep(0.01)

    async def udp_load(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(("127.0.0.1", self.udp_port))
        try:
            while not self.stop.is_set():
                payload = json.dumps({"asset": self.rng.choice(ASSETS), "api_key": self.key}).encode()
                await loop.sock_sendall(sock, payload)
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
                    code = json.loads(data)["status_code"]
                    self.answers[f"udp {code}"] += 1
                    if code >= 500:
                        self.errors[f"udp {code}"] += 1
                except TimeoutError:
                    self.errors["udp timeout"] += 1
                await asyncio.sleep(0.02)
        finally:
            sock.close()

    # ---- chaos -----------------------------------------------------------------------------------------
    async def control(self, c: httpx.AsyncClient, **body: Any) -> None:
        r = await c.post(f"http://127.0.0.1:{self.sim_port}/_control", json=body)
        r.raise_for_status()

    async def chaos(self) -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            await asyncio.sleep(WARMUP_S / 2)
            while not self.stop.is_set():
                exchange, fault = self.rng.choice(EXCHANGES), self.rng.choice(FAULTS)
                hold = self.rng.uniform(5, 15)
                self.chaos_log.append(f"{time.strftime('%H:%M:%S')} {exchange} {fault} {hold:.0f}s")
                if fault == "skew":
                    await self.control(
                        c, action="set_clock_skew", exchange=exchange, seconds=self.rng.choice((1e12, -3e8, 7200))
                    )
                else:
                    await self.control(c, action="set_mode", exchange=exchange, mode=fault)
                    if fault == "down":
                        await self.control(c, action="drop", exchange=exchange)
                try:
                    await asyncio.wait_for(self.stop.wait(), hold)
                except TimeoutError:
                    pass
                await self.control(c, action="reset")
                await asyncio.sleep(self.rng.uniform(2, 8))

    # ---- sampling ----------------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as c:
            return (await c.get(self.base + "/health")).json()["data"]

    async def sampler(self, started: float) -> None:
        while not self.stop.is_set():
            data = await self.health()
            feeds = {name: f"{h['state']}/{h['last_message_age_s']}" for name, h in (data.get("feeds") or {}).items()}
            self.samples.append(
                {
                    "t": round(time.time() - started, 1),
                    "rss_mb": round(rss_mb(self.serve.pid), 1),
                    "ws_clients": data["websocket"]["clients"],
                    "feeds": feeds,
                    "answers": sum(self.answers.values()),
                    "errors": sum(self.errors.values()),
                }
            )
            print(json.dumps(self.samples[-1]), flush=True)
            try:
                await asyncio.wait_for(self.stop.wait(), 10)
            except TimeoutError:
                pass

    async def run(self) -> dict[str, Any]:
        started = time.time()
        tasks = [asyncio.create_task(self.ws_churn()) for _ in range(self.ws_clients)]
        tasks += [asyncio.create_task(self.http_load()) for _ in range(self.http_clients)]
        tasks += [asyncio.create_task(self.udp_load()), asyncio.create_task(self.chaos())]
        sampler = asyncio.create_task(self.sampler(started))
        await asyncio.sleep(self.duration)
        self.stop.set()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
        # Chaos is over (the last switch was reset): every feed must come back on its own.
        async with httpx.AsyncClient(timeout=10) as c:
            await self.control(c, action="reset")
        recovered_in = None
        deadline = time.time() + RECOVERY_S
        t0 = time.time()
        while time.time() < deadline:
            feeds = (await self.health())["feeds"] or {}
            if feeds and all(h["state"] == "connected" and (h["last_message_age_s"] or 99) < 5 for h in feeds.values()):
                recovered_in = round(time.time() - t0, 1)
                break
            await asyncio.sleep(1)
        final_feeds = (await self.health())["feeds"]
        steady = [(s["t"], s["rss_mb"]) for s in self.samples if s["t"] >= WARMUP_S]
        return {
            "duration_s": round(time.time() - started, 1),
            "rss_mb_first": steady[0][1] if steady else None,
            "rss_mb_last": steady[-1][1] if steady else None,
            "rss_mb_max": max((y for _, y in steady), default=None),
            "rss_slope_mb_per_min": round(slope_mb_per_min(steady), 3),
            "rss_slope_second_half_mb_per_min": round(slope_mb_per_min(steady[len(steady) // 2 :]), 3),
            "answers": dict(self.answers),
            "errors": dict(self.errors),
            "chaos": self.chaos_log,
            "feeds_recovered_in_s": recovered_in,
            "final_feeds": {
                n: {
                    "state": h["state"],
                    "age_s": h["last_message_age_s"],
                    "reconnects": h["reconnects"],
                    "errors": h["errors"],
                }
                for n, h in (final_feeds or {}).items()
            },
            "samples": self.samples,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--ws-clients", type=int, default=20)
    parser.add_argument("--http-clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    soak = Soak(args.minutes, args.ws_clients, args.http_clients, args.seed)
    soak.start()
    try:
        result = asyncio.run(soak.run())
    finally:
        soak.finish()
    result["serve_exit_code"] = soak.serve.returncode
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    server_errors = sum(
        n for k, n in result["answers"].items() if k.split()[-1].isdigit() and int(k.split()[-1]) >= 500
    )
    flat = abs(result["rss_slope_mb_per_min"]) < 1.0
    ok = server_errors == 0 and result["feeds_recovered_in_s"] is not None and flat and result["serve_exit_code"] == 0
    print("SOAK", "PASSED" if ok else "FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
