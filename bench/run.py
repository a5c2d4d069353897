"""The benchmark harness: start everything on loopback, load it, write bench/RESULTS.md.

`python bench/run.py --quick` (CI: a few seconds per figure) or `--full` (by hand, on a quiet
machine). Every figure comes with its baseline measured in the same run, because these
machines are noisy: the ratio is the figure that means something. The goals are issue 18's.
The network figures (HTTP per server, UDP per interpreter, WebSocket; pinned and unpinned)
are in netfigures.py. Everything started here is stopped here.

Quick mode proves the harness: it exits 1 when a figure could not be taken (a process that
did not start, a load client that failed), never because a goal was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netfigures  # bench/ is not a package: the harness's own modules sit next to run.py

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PY = sys.executable
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every load client connects from 127.0.0.1: the per-address cap (256 by default) would refuse most of
# the 1,000 WS clients, the 10,000 idle ones and the 1,000 concurrent misses, so the servers measured
# here run without the connection caps (0 = no limit).
NO_CONNECTION_CAPS = {"BEAST_MAX_CONNECTIONS": "0", "BEAST_MAX_CONNECTIONS_PER_IP": "0"}
# Written into RESULTS.md by bench/report_isolation.py --write (its MARK_BEGIN/MARK_END), kept by write_results.
REPORT_ISOLATION_MARKS = ("<!-- report-isolation:begin -->", "<!-- report-isolation:end -->")


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
    py: str = PY  # the load clients' interpreter
    bench: Path = BENCH
    redis_url: str = REDIS_URL

    @property
    def seconds(self) -> int:
        return 2 if self.quick else 15

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
    def start_beast(
        self, workers: int = 1, server: str = "uvicorn", python: str = PY, extra_env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """`beast serve` (env BEAST_SERVER=`server`, run by `python`) over Redis, prices from `beast sim`
        in its own process. `served_by` says which server answered (see netfigures.served_by)."""
        sim_port = free_port()
        sim = self.spawn([PY, "-m", "trinity_beast", "sim", "--port", str(sim_port)], name="sim")
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
            "BEAST_SERVER": server,
            **NO_CONNECTION_CAPS,
            **(extra_env or {}),
        }

        def create_key(*options: str) -> str:
            created = subprocess.run(
                [PY, "-m", "trinity_beast", "keys", "create", "--name", "bench", *options, "--json"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
                cwd=self.work,
            )
            return str(json.loads(created.stdout)["key"])

        key = create_key("--tier", "partner")
        # A limited key far from its limit: every price is reserved in Redis before it is served.
        limited_key = create_key("--tier", "subscriber", "--monthly-limit", "1000000000")
        args = [python, "-m", "trinity_beast", "serve"]
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
        return {
            "proc": proc,
            "url": url,
            "key": key,
            "limited_key": limited_key,
            "env": env,
            "sim_port": sim_port,
            "namespace": namespace,
            "sim": sim,
            "served_by": netfigures.served_by(url, server),
        }

    def stop_beast(self, beast: dict[str, Any]) -> None:
        self.stop(beast["proc"])
        self.stop(beast["sim"])

    # ---- measurements -----------------------------------------------------------------------
    def wrk(
        self, url: str, headers: dict[str, str] | None = None, connections: int = 50, prefix: list[str] | None = None
    ) -> dict[str, float]:
        """wrk (closed loop) against `url`; `prefix` runs it under taskset."""
        args = ["wrk", "-t1", f"-c{connections}", f"-d{self.seconds}s", "--latency", url]
        for name, value in (headers or {}).items():
            args[1:1] = ["-H", f"{name}: {value}"]
        out = subprocess.run([*(prefix or []), *args], capture_output=True, text=True, check=True).stdout
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
        **NO_CONNECTION_CAPS,
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
    others = {s: statuses.count(s) for s in sorted(set(statuses) - {200})}
    h.add(
        Figure(
            "1,000 concurrent requests for one uncached asset (LINK)",
            f"REST calls made: {rest or 'none'}; answers 200: {ok} of 1000"
            + (f" (others by status, 0 = no answer: {others})" if others else ""),
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
        if any(p.poll() not in (None, 0) for p in loaders):
            break
        time.sleep(0.2)
    if not all(p.exists() for p in holds):  # a figure over fewer clients than it says would be wrong
        for p in loaders:
            p.kill()
        raise RuntimeError(f"memory figure: the {clients} idle WebSocket clients did not all connect")
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

    runs = 1 if h.quick else 7
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
    ratio = round(out["ingest_per_s"] / out["peak_per_s"], 1)
    h.add(
        Figure(
            "ingest: exchange messages -> connector -> price book, per core",
            f"{out['ingest_per_s']} messages/s ({out['messages']} messages, six exchanges)",
            f"the six exchanges' peak for 150 assets: {out['peak_per_s']} messages/s ({out['peak_how']})",
            ratio,
            ">= 20x the exchanges' peak",
            ratio >= 20,
            f"python bench/ingest.py {per_exchange}",
            f"orjson.loads alone on the same messages: {out['loads_per_s']} messages/s (recorded, no longer a goal);"
            f" frames parsed here {out['frame_bytes']} bytes on average, the recorded exchange updates"
            f" {out['recorded_frame_bytes']} bytes",
        )
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(pythons: list[str]) -> list[str]:
    versions = ", ".join(
        f"{p} {_version(p)}"
        for p in ("uvicorn", "granian", "uvloop", "httptools", "fastapi", "orjson", "websockets", "redis")
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
        f"- servers' interpreters for the UDP figures: {', '.join(netfigures.python_version(p) for p in pythons)}",
        f"- load: {wrk}, the open-loop client bench/openloop.py and the asyncio clients in bench/loadgen.py, on the"
        f" same machine; pinned rows: server on CPU {netfigures.SERVER_CPUS}, load clients on CPU"
        f" {netfigures.LOAD_CPUS} (taskset; Redis not pinned)",
    ]


def kept_sections(path: Path) -> str:
    """Sections written into the results by other scripts (bench/report_isolation.py --write), kept as they are."""
    begin, end = REPORT_ISOLATION_MARKS
    text = path.read_text() if path.exists() else ""
    if begin not in text or end not in text:
        return ""
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end


def write_results(h: Harness, path: Path, command: str, elapsed_s: float, pythons: list[str]) -> None:
    kept = kept_sections(BENCH / "RESULTS.md")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" ({'quick' if h.quick else 'full'} mode: {h.seconds} s per load figure; the whole run took"
        f" {elapsed_s / 60:.1f} min).",
        "",
        *machine(pythons),
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
    if kept:
        lines += ["", kept]
    lines += [
        "",
        (BENCH / "GAPS.md").read_text().rstrip(),
        "",
        "## Profiles of this run (`python bench/hotpaths.py`)",
        "",
        subprocess.run([PY, str(BENCH / "hotpaths.py")], capture_output=True, text=True, check=True).stdout.rstrip(),
    ]
    path.write_text("\n".join(lines) + "\n")


def ensure_tools() -> None:
    """wrk and taskset (util-linux) from Debian's packages when missing."""
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux")) if shutil.which(tool) is None]
    if not missing:
        return
    print(f"[bench] installing {', '.join(missing)} (Debian packages)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def server_pythons(given: list[str]) -> list[str]:
    """This interpreter, then each `--server-python` (the UDP figures are taken on each); one that is
    asked for and missing stops the run (a figure silently left out would read as measured)."""
    missing = [p for p in given if not Path(p).exists()]
    if missing:
        raise SystemExit(f"--server-python: no such interpreter: {', '.join(missing)}")
    return [PY, *[os.path.abspath(p) for p in given]]  # abspath, not resolve: a venv's python is a symlink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few seconds per figure (CI)")
    mode.add_argument("--full", action="store_true", help="the recorded run (default)")
    parser.add_argument("--workers", type=int, default=2, help="LPO worker processes for the HTTP and WS figures")
    parser.add_argument(
        "--server-python",
        action="append",
        default=[],
        help="another interpreter (with the project installed) to take the UDP figures on, e.g. .venv313/bin/python",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default bench/RESULTS.md; quick: a temp file)"
    )
    args = parser.parse_args(argv)
    pythons = server_pythons(args.server_python)
    ensure_tools()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="beast-bench-") as tmp:
        h = Harness(quick=args.quick, work=Path(tmp))
        out = args.out or (Path(tmp) / "RESULTS.md" if args.quick else BENCH / "RESULTS.md")
        try:
            bench_ingest(h)
            bench_cold_start(h)
            netfigures.bench_http_and_ws(h, args.workers)
            for python in pythons:
                beast = h.start_beast(workers=1, python=python)
                netfigures.bench_udp(h, beast, python)
                if python == PY:
                    bench_memory(h, beast)
                h.stop_beast(beast)
            bench_single_flight(h)
        finally:
            h.stop_all()
        command = (
            "python bench/run.py "
            + ("--quick" if args.quick else "--full")
            + (f" --workers {args.workers}" if args.workers != 2 else "")
            + "".join(f" --server-python {p}" for p in args.server_python)
        )
        write_results(h, out, command, time.time() - started, pythons)
        print(out.read_text())
        if args.quick:
            missing = [f.name for f in h.figures if f.value == ""]
            return 1 if missing else 0
    return 0


if __name__ == "__main__":
    sys.modules["run"] = sys.modules["__main__"]  # netfigures imports Figure and free_port from here: one module
    raise SystemExit(main())
