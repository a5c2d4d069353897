"""The benchmark harness: start everything on loopback, load it, write bench/RESULTS.md.

`python bench/run.py --quick` (CI: a few seconds per figure) or `--full` (by hand). Every
figure comes with its baseline measured in the same run, because these machines are noisy:
the ratio is the figure that means something. Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PY = sys.executable
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WS_RATE = float(os.environ.get("BENCH_WS_RATE", "130"))  # ticks/s; x 1,000 clients = deliveries/s offered


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Figure:
    name: str
    value: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None
    command: str
    notes: str = ""


@dataclass
class Harness:
    quick: bool
    work: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    @property
    def seconds(self) -> int:
        return 3 if self.quick else 15

    # ---- processes ------------------------------------------------------------------------
    def spawn(self, args: list[str], env: dict[str, str] | None = None, name: str = "proc") -> subprocess.Popen:
        log = open(self.work / f"{name}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
            start_new_session=True,
        )  # its own process group: stop() reaches its children too
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                httpx.get(url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer in {timeout} s")

    # ---- the system under test ------------------------------------------------------------
    def start_beast(self, workers: int = 1) -> dict[str, Any]:
        """`beast serve` over Redis, prices from `beast sim` in its own process."""
        sim_port = free_port()
        self.spawn([PY, "-m", "trinity_beast", "sim", "--port", str(sim_port)], name="sim")
        self.wait_http(f"http://127.0.0.1:{sim_port}/_control")
        from beast_sim import sim_env

        namespace = "bench" + uuid.uuid4().hex[:8]
        env = {
            **sim_env("127.0.0.1", sim_port),
            "REDIS_URL": REDIS_URL,
            "BEAST_REDIS_NAMESPACE": namespace,
            "BEAST_DATA_DIR": str(self.work / "data"),
            "BEAST_LPO_PORT": str(free_port()),
            "BEAST_LRS_PORT": str(free_port()),
            "BEAST_LPO_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "BEAST_LRS_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "BEAST_LOG_LEVEL": "WARNING",
            "APP_REPORT_SERVER": "false",
        }
        key = json.loads(
            subprocess.run(
                [PY, "-m", "trinity_beast", "keys", "create", "--name", "bench", "--tier", "partner", "--json"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
                cwd=self.work,
            ).stdout
        )["key"]
        args = [PY, "-m", "trinity_beast", "serve"]
        if workers > 1:
            args += ["--workers", str(workers)]
        proc = self.spawn(args, env, name="beast")
        url = f"http://127.0.0.1:{env['BEAST_LPO_PORT']}"
        self.wait_http(url + "/health")
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.time() + 30
        while time.time() < deadline:  # the feeds deliver the first prices within a moment
            r = httpx.get(url + "/price?asset=BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,DOT,LINK,LTC", headers=headers)
            if r.status_code == 200 and len(r.json()["data"]["assets"]) == 10:
                break
            time.sleep(0.2)
        return {"proc": proc, "url": url, "key": key, "env": env, "sim_port": sim_port, "namespace": namespace}

    # ---- measurements -----------------------------------------------------------------------
    def wrk(self, url: str, headers: dict[str, str] | None = None, connections: int = 50) -> dict[str, float]:
        args = ["wrk", "-t1", f"-c{connections}", f"-d{self.seconds}s", "--latency", url]
        for name, value in (headers or {}).items():
            args[1:1] = ["-H", f"{name}: {value}"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
        p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
        non2xx = sum(int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line)
        return {"rps": rps, "p99_ms": _ms(p99), "non2xx": non2xx}

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        mark = {True: "met", False: "MISSED", None: "-"}[figure.met]
        print(
            f"[bench] {figure.name}: {figure.value} | baseline {figure.baseline} | ratio {figure.ratio} | {mark}",
            flush=True,
        )


def _ms(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def bench_http(h: Harness, beast: dict[str, Any], workers: int) -> None:
    headers = {"Authorization": f"Bearer {beast['key']}"}
    one = beast["url"] + "/price?asset=BTC"
    ten = beast["url"] + "/price?asset=BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,DOT,LINK,LTC"
    body = httpx.get(one, headers=headers).content
    (h.work / "price.json").write_bytes(body)
    bare_port = free_port()
    bare = h.spawn(
        [PY, str(BENCH / "bare.py"), "http", str(bare_port), str(h.work / "price.json"), str(workers)], name="bare-http"
    )
    h.wait_http(f"http://127.0.0.1:{bare_port}/")
    base = h.wrk(f"http://127.0.0.1:{bare_port}/price?asset=BTC")
    h.stop(bare)
    ours = h.wrk(one, headers)
    cmd = f"wrk -t1 -c50 -d{h.seconds}s --latency -H 'Authorization: Bearer KEY' '{one}'"
    ratio = round(ours["rps"] / base["rps"], 3)
    h.add(
        Figure(
            f"HTTP GET /price?asset=BTC (cached, auth + metering, {workers} worker(s))",
            f"{ours['rps']:.0f} req/s, p99 {ours['p99_ms']:.2f} ms, non-2xx {ours['non2xx']}",
            f"bare ASGI, same bytes, same server and workers: {base['rps']:.0f} req/s, p99 {base['p99_ms']:.2f} ms",
            ratio,
            ">= 20,000 req/s with p99 < 5 ms, and >= 0.6x bare",
            ours["rps"] >= 20000 and ours["p99_ms"] < 5 and ratio >= 0.6,
            cmd,
        )
    )
    many = h.wrk(ten, headers)
    h.add(
        Figure(
            "HTTP GET /price with 10 assets",
            f"{many['rps']:.0f} req/s, p99 {many['p99_ms']:.2f} ms",
            f"one asset, same run: {ours['rps']:.0f} req/s",
            round(many["rps"] / ours["rps"], 3),
            ">= 0.5x the one-asset figure",
            many["rps"] >= 0.5 * ours["rps"],
            cmd.replace("asset=BTC'", "asset=BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,DOT,LINK,LTC'"),
        )
    )


def bench_udp(h: Harness, beast: dict[str, Any]) -> None:
    port = int(beast["env"]["BEAST_LPO_UDP_PORT"])
    payload = h.work / "udp.json"
    payload.write_text(json.dumps({"asset": "BTC", "api_key": beast["key"]}))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(payload.read_bytes(), ("127.0.0.1", port))
        (h.work / "udp-answer.json").write_bytes(s.recvfrom(4096)[0])
    bare_port = free_port(socket.SOCK_DGRAM)
    bare = h.spawn(
        [PY, str(BENCH / "bare.py"), "udp", str(bare_port), str(h.work / "udp-answer.json")], name="bare-udp"
    )
    time.sleep(1)

    def load(target: int) -> dict:
        out = subprocess.run(
            [PY, str(BENCH / "loadgen.py"), "udp", "127.0.0.1", str(target), str(payload), str(h.seconds), "32"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    base = load(bare_port)
    h.stop(bare)
    ours = load(port)
    ratio = round(ours["rps"] / base["rps"], 3)
    h.add(
        Figure(
            "UDP 2679, 32 requests in flight",
            f"{ours['rps']:.0f} req/s, p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms, errors {ours['errors']}",
            f"bare asyncio UDP, same bytes: {base['rps']:.0f} req/s, p99 {base['p99_ms']} ms",
            ratio,
            ">= 0.7x bare; p99 < 1 ms",
            ratio >= 0.7 and ours["p99_ms"] < 1,
            f"python bench/loadgen.py udp 127.0.0.1 PORT udp.json {h.seconds} 32",
        )
    )


def _publish(beast: dict[str, Any], seconds: float, rate: float) -> int:
    """Write BTC ticks into Redis at `rate`/s (the server pushes each to every subscriber)."""
    import asyncio
    from decimal import Decimal

    from trinity_beast.domain.tick import Tick
    from trinity_beast.stores.cache.redis import RedisCache

    async def run() -> int:
        cache = RedisCache(REDIS_URL, namespace=beast["namespace"])
        sent = 0
        stop = time.time() + seconds
        while time.time() < stop:
            now = time.time()
            # priority exchange, so every tick is the served price and is pushed
            await cache.put_tick(Tick("BTC", "USD", Decimal(60000 + sent % 1000), None, None, "coinbase", now, now))
            sent += 1
            await asyncio.sleep(1 / rate)
        await cache.close()
        return sent

    return asyncio.run(run())


def bench_ws(h: Harness, beast: dict[str, Any]) -> None:
    clients = 200 if h.quick else 1000
    procs = 4
    url = beast["url"].replace("http://", "ws://") + f"/ws/prices?api_key={beast['key']}"
    seconds = h.seconds + 4
    loaders = [
        subprocess.Popen(
            [PY, str(BENCH / "loadgen.py"), "ws", url, "BTC", str(clients // procs), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    time.sleep(3)  # connect and subscribe
    rate = WS_RATE
    sent = _publish(beast, h.seconds, rate)
    rate = sent / h.seconds  # what the publisher achieved (sleep and Redis round trips pace it)
    results = [json.loads(p.communicate(timeout=120)[0]) for p in loaders]
    deliveries = sum(r["deliveries"] for r in results)
    connected = sum(r["clients"] for r in results)
    latencies = [x for r in results for x in r["latencies_ms"]]
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 100 else float("nan")
    expected = sent * connected
    dps = deliveries / h.seconds
    h.add(
        Figure(
            f"WS /ws/prices, {connected} clients subscribed to BTC",
            f"{dps:.0f} deliveries/s ({deliveries} of {expected} expected), publish-to-receive p99 {p99:.1f} ms",
            f"publisher: {sent} ticks at {rate:.0f}/s into Redis",
            round(deliveries / expected, 3) if expected else None,
            ">= 100,000 deliveries/s; p99 < 20 ms (1,000 clients)",
            (dps >= 100_000 and p99 < 20) if not h.quick else None,
            f"python bench/loadgen.py ws URL BTC {clients // procs} {seconds}  (x{procs} processes)",
            "ratio = deliveries / (ticks x clients): 1.0 means no update was lost or coalesced",
        )
    )


def bench_single_flight(h: Harness) -> None:
    """1,000 concurrent requests for one asset nobody has a price for yet."""
    import asyncio

    sim_port = free_port()
    h.spawn([PY, "-m", "trinity_beast", "sim", "--port", str(sim_port)], name="sim-sf")
    h.wait_http(f"http://127.0.0.1:{sim_port}/_control")
    from beast_sim import sim_env

    env = {
        **sim_env("127.0.0.1", sim_port),
        "BEAST_DATA_DIR": str(h.work / "sf"),
        "BEAST_FEEDS": "false",
        "BEAST_PREWARM": "false",
        "BEAST_LPO_PORT": str(free_port()),
        "BEAST_LRS_PORT": str(free_port()),
        "BEAST_LPO_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "BEAST_LRS_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "BEAST_LOG_LEVEL": "WARNING",
    }
    key = json.loads(
        subprocess.run(
            [PY, "-m", "trinity_beast", "keys", "create", "--name", "sf", "--tier", "partner", "--json"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
            cwd=h.work,
        ).stdout
    )["key"]
    proc = h.spawn([PY, "-m", "trinity_beast", "serve"], env, name="beast-sf")
    url = f"http://127.0.0.1:{env['BEAST_LPO_PORT']}"
    h.wait_http(url + "/health")
    # USDT/USD first, so a USDT-quoted exchange could convert; then count from zero.
    httpx.get(url + "/price?asset=USDT", headers={"Authorization": f"Bearer {key}"})
    httpx.post(f"http://127.0.0.1:{sim_port}/_control", json={"action": "reset_counters"})

    async def storm() -> list[int]:
        limits = httpx.Limits(max_connections=1000)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            rs = await asyncio.gather(
                *(
                    client.get(url + "/price?asset=LINK", headers={"Authorization": f"Bearer {key}"})
                    for _ in range(1000)
                ),
                return_exceptions=True,
            )
        return [r.status_code if isinstance(r, httpx.Response) else 0 for r in rs]

    statuses = asyncio.run(storm())
    calls = httpx.get(f"http://127.0.0.1:{sim_port}/_control").json()["state"]
    rest = {ex: n for ex, n in calls["rest_calls"].items() if n}
    h.stop(proc)
    ok = statuses.count(200)
    h.add(
        Figure(
            "1,000 concurrent requests for one uncached asset (LINK)",
            f"REST calls made: {rest or 'none'}; answers 200: {ok} of 1000",
            "one call per exchange tried (exchanges tried in priority order until one answers)",
            None,
            "exactly one per exchange tried",
            sum(rest.values()) == 1 and ok == 1000,
            "1,000 concurrent httpx GETs of /price?asset=LINK against `beast serve` (no feeds, no prewarm) + simulator",
        )
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_memory(h: Harness, beast: dict[str, Any]) -> None:
    clients = 1000 if h.quick else 10_000
    procs = 5
    url = beast["url"].replace("http://", "ws://") + f"/ws/prices?api_key={beast['key']}"
    pid = beast["proc"].pid
    before = rss_kib(pid)
    holds = []
    loaders = []
    for i in range(procs):
        hold = h.work / f"hold-{i}"
        holds.append(hold)
        loaders.append(subprocess.Popen([PY, str(BENCH / "loadgen.py"), "idle", url, str(clients // procs), str(hold)]))
    deadline = time.time() + 120
    while not all(p.exists() for p in holds) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    during = rss_kib(pid)
    per_client = (during - before) / clients
    for hold in holds:
        hold.unlink(missing_ok=True)
    for p in loaders:
        p.wait(60)
    assets = httpx.get(beast["url"] + "/health").json()["data"]["assets_held"]
    h.add(
        Figure(
            f"memory: RSS with {assets} assets and {clients} idle WS clients",
            f"{during / 1024:.1f} MiB ({per_client:.1f} KiB per client)",
            f"same process before the clients: {before / 1024:.1f} MiB",
            round(during / before, 3) if before else None,
            "<= 100 KiB per client",
            per_client <= 100,
            f"python bench/loadgen.py idle URL {clients // procs} HOLD  (x{procs} processes); VmRSS of `beast serve`",
        )
    )


def bench_cold_start(h: Harness) -> None:
    """bench/lambda_import.py: each handler's import against Powertools' resolver alone."""
    sys.path.insert(0, str(BENCH))
    import lambda_import

    runs = 3 if h.quick else 7
    base, figures = lambda_import.measure(runs, h.work / "cold")
    for f in figures:
        h.add(
            Figure(
                f"Lambda cold start: import of functions/{f.name}",
                f"{f.import_ms:.0f} ms (median of {runs} fresh interpreters; {f.first_request_ms:.0f} ms with what its"
                " first request imports)",
                f"powertools APIGatewayRestResolver alone: {base:.0f} ms",
                f.ratio,
                f"<= {lambda_import.GOAL_RATIO}x the resolver",
                f.ratio <= lambda_import.GOAL_RATIO,
                f"python bench/lambda_import.py {runs}",
            )
        )


def bench_ingest(h: Harness) -> None:
    per_exchange = 500 if h.quick else 3000
    out = json.loads(
        subprocess.run(
            [PY, str(BENCH / "ingest.py"), str(per_exchange)], capture_output=True, text=True, check=True
        ).stdout
    )
    h.add(
        Figure(
            "ingest: exchange messages -> connector -> price book, one core",
            f"{out['ingest_per_s']} messages/s ({out['messages']} messages, six exchanges)",
            f"orjson.loads alone on the same messages: {out['loads_per_s']} messages/s",
            out["ratio"],
            ">= 0.5x orjson.loads",
            out["ratio"] >= 0.5,
            f"python bench/ingest.py {per_exchange}",
        )
    )


def machine() -> list[str]:
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("uvicorn", "uvloop", "httptools", "fastapi", "orjson", "websockets", "redis")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return [
        f"- machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.platform()}",
        f"- Python {platform.python_version()}; {versions}",
        f"- load: {wrk}, and the asyncio clients in bench/loadgen.py, on the same machine",
    ]


def write_results(h: Harness, path: Path, command: str) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" ({'quick' if h.quick else 'full'} mode: {h.seconds} s per load figure).",
        "",
        *machine(),
        "",
        "| figure | result | baseline (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in h.figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.met]
        lines.append(
            f"| {f.name} | {f.value} | {f.baseline} | {f.ratio if f.ratio is not None else '-'} | {f.goal} | {met} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"- {f.name}: `{f.command}`" + (f" ({f.notes})" if f.notes else "") for f in h.figures]
    lines += [
        "",
        (BENCH / "GAPS.md").read_text().rstrip(),
        "",
        "## Profiles of this run (`python bench/hotpaths.py`)",
        "",
        subprocess.run([PY, str(BENCH / "hotpaths.py")], capture_output=True, text=True, check=True).stdout.rstrip(),
    ]
    path.write_text("\n".join(lines) + "\n")


def ensure_wrk() -> None:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode == 0:
        return
    print("[bench] installing wrk (Debian package)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few seconds per figure (CI)")
    mode.add_argument("--full", action="store_true", help="the recorded run (default)")
    parser.add_argument("--workers", type=int, default=2, help="LPO worker processes for the HTTP figures")
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default bench/RESULTS.md; quick: a temp file)"
    )
    args = parser.parse_args(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="beast-bench-") as tmp:
        h = Harness(quick=args.quick, work=Path(tmp))
        out = args.out or (Path(tmp) / "RESULTS.md" if args.quick else BENCH / "RESULTS.md")
        try:
            bench_ingest(h)
            bench_cold_start(h)
            beast = h.start_beast(workers=args.workers)
            bench_http(h, beast, args.workers)
            h.stop(beast["proc"])
            beast = h.start_beast(workers=1)
            bench_udp(h, beast)
            bench_ws(h, beast)
            bench_memory(h, beast)
            bench_single_flight(h)
        finally:
            h.stop_all()
        command = (
            "python bench/run.py "
            + ("--quick" if args.quick else "--full")
            + (f" --workers {args.workers}" if args.workers != 2 else "")
        )
        write_results(h, out, command)
        print(out.read_text())
        if args.quick:
            missing = [f.name for f in h.figures if f.value == ""]
            return 1 if missing else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
