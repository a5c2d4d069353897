"""The network figures of bench/run.py: HTTP, UDP and WebSocket, each against its baseline in the same run.

Every figure is taken twice: unpinned (the kernel schedules the server and the load clients
over both cores) and pinned (`taskset`: the server's processes on SERVER_CPUS, every load
client on LOAD_CPUS, so the load never starves the server). HTTP and WebSocket figures are
taken for each server (`BEAST_SERVER`: uvicorn, granian) on one `beast serve --workers N`
each; UDP for each server interpreter (`--server-python`: Python 3.12+ can start each
datagram's task eagerly) on one single-worker `beast serve`. Each row names the server that
answered (`served_by`), not only the one asked for: a build without the granian option
serves on uvicorn whatever BEAST_SERVER says, and its "granian" rows say so.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Harness

SERVER_CPUS, LOAD_CPUS = "0", "1"
SERVERS = ("uvicorn", "granian")
MODES = ("unpinned", "pinned")
OPEN_LOOP_RPS = 10_000
TEN = "BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,DOT,LINK,LTC"
WS_ASSETS = TEN.split(",")
WS_RATE = float(os.environ.get("BENCH_WS_RATE", "100"))  # updates/s in total, spread over WS_ASSETS
# BEAST_WS_MAX_PUSHES_PER_S (default 10 per asset per client) coalesces faster updates; the publisher
# offers exactly 10/s per asset, so its jitter alone would coalesce some at the default. Raised for
# the servers of the HTTP/WS figures (it only acts on WebSocket pushes), and said so in the WS rows.
WS_PUSH_LIMIT = "20"


def served_by(url: str, asked: str) -> str:
    """Which server answered: granian names itself in a `server` header, our uvicorn sends none."""
    import httpx

    header = httpx.get(url + "/health", timeout=5).headers.get("server", "").strip()
    name = header.split("/")[0].lower() if header else "uvicorn"
    if name == asked:
        return name
    how = f"`server: {header}` header" if header else "no `server` header"
    return f"{name} (BEAST_SERVER={asked} set, {how}: this build serves on {name})"


def python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def all_cpus() -> str:
    return f"0-{(os.cpu_count() or 1) - 1}"


def group_pids(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def pin(proc: subprocess.Popen, mode: str) -> None:
    """Put every thread of the process group (workers included) on the server's cores, or free them."""
    cpus = SERVER_CPUS if mode == "pinned" else all_cpus()
    for pid in group_pids(proc.pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True)


def load_prefix(mode: str) -> list[str]:
    return ["taskset", "-c", LOAD_CPUS] if mode == "pinned" else []


def run_json(args: list[str], timeout: float = 300) -> dict:
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True, timeout=timeout).stdout)


def open_loop(h: Harness, mode: str, port: int, path: str, headers: dict[str, str]) -> dict:
    args = [
        *load_prefix(mode),
        h.py,
        str(h.bench / "openloop.py"),
        "http",
        "127.0.0.1",
        str(port),
        path,
        str(OPEN_LOOP_RPS),
        str(h.seconds),
        "64",
        *[f"{k}: {v}" for k, v in headers.items()],
    ]
    return run_json(args)


def latency_goal(ours: dict, base: dict) -> bool:
    return ours["p99_ms"] < 5 and ours["p99_ms"] <= 2 * base["p99_ms"] and ours["errors"] == 0 and ours["non2xx"] == 0


def bare_http(h: Harness, beast: dict[str, Any], workers: int) -> dict[str, dict]:
    """The baseline in both modes: the same bytes as our /price from a bare ASGI app on uvicorn."""
    import httpx
    from run import free_port

    headers = {"Authorization": f"Bearer {beast['key']}"}
    (h.work / "price.json").write_bytes(httpx.get(beast["url"] + "/price?asset=BTC", headers=headers).content)
    port = free_port()
    bare = h.spawn(
        [h.py, str(h.bench / "bare.py"), "http", str(port), str(h.work / "price.json"), str(workers)], name="bare-http"
    )
    h.wait_http(f"http://127.0.0.1:{port}/")
    base: dict[str, dict] = {}
    for mode in MODES:
        pin(bare, mode)
        base[mode] = {
            "wrk": h.wrk(f"http://127.0.0.1:{port}/price?asset=BTC", prefix=load_prefix(mode)),
            "open": open_loop(h, mode, port, "/price?asset=BTC", {}),
        }
    h.stop(bare)
    return base


def measure_http(h: Harness, beast: dict[str, Any]) -> dict[str, dict]:
    """Our /price on one server in both modes: throughput, open-loop latency, and 10 assets (unpinned)."""
    headers = {"Authorization": f"Bearer {beast['key']}"}
    port = int(beast["url"].rsplit(":", 1)[1])
    got: dict[str, dict] = {}
    for mode in MODES:
        pin(beast["proc"], mode)
        got[mode] = {
            "wrk": h.wrk(beast["url"] + "/price?asset=BTC", headers, prefix=load_prefix(mode)),
            "open": open_loop(h, mode, port, "/price?asset=BTC", headers),
        }
    pin(beast["proc"], "unpinned")
    got["ten"] = h.wrk(beast["url"] + f"/price?asset={TEN}", headers)
    got["limited"] = h.wrk(beast["url"] + "/price?asset=BTC", {"Authorization": f"Bearer {beast['limited_key']}"})
    return got


def report_http(h: Harness, workers: int, base: dict[str, dict], ours: dict[str, dict[str, dict]]) -> None:
    from run import Figure

    for mode in MODES:
        b = base[mode]["wrk"]
        for server, got in ours.items():
            o = got[mode]["wrk"]
            ratio = round(o["rps"] / b["rps"], 3)
            h.add(
                Figure(
                    f"HTTP GET /price?asset=BTC (auth, quota, metering, envelope), {server}, {workers} workers, {mode}",
                    f"{o['rps']:.0f} req/s, p99 {o['p99_ms']:.2f} ms, non-2xx {o['non2xx']}",
                    f"bare ASGI app on uvicorn + httptools, same bytes, {workers} workers, {mode}: {b['rps']:.0f} req/s",
                    ratio,
                    ">= 1.0x bare uvicorn",
                    ratio >= 1.0 and o["non2xx"] == 0,
                    f"{' '.join(load_prefix(mode))} wrk -t1 -c50 -d{h.seconds}s --latency -H 'Authorization: Bearer KEY' URL",
                )
            )
    for mode in MODES:
        b = base[mode]["open"]
        for server, got in ours.items():
            o = got[mode]["open"]
            ratio = round(o["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] else None
            h.add(
                Figure(
                    f"HTTP /price latency at {OPEN_LOOP_RPS} req/s offered (open loop), {server}, {mode}",
                    f"p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms, p99.9 {o['p999_ms']} ms; {o['achieved_rps']:.0f} req/s"
                    f" answered, errors {o['errors']}, non-2xx {o['non2xx']}",
                    f"bare app on uvicorn, same load: p99 {b['p99_ms']} ms ({b['achieved_rps']:.0f} req/s answered)",
                    ratio,
                    "p99 < 5 ms and <= 2x the bare p99",
                    latency_goal(o, b),
                    f"{' '.join(load_prefix(mode))} python bench/openloop.py http 127.0.0.1 PORT /price?asset=BTC"
                    f" {OPEN_LOOP_RPS} {h.seconds} 64 'Authorization: Bearer KEY'",
                    "ratio = our p99 / the bare p99",
                )
            )
    for server, got in ours.items():
        o, lim = got["unpinned"]["wrk"], got["limited"]
        h.add(
            Figure(
                f"HTTP GET /price?asset=BTC, a limited key (each price reserved in Redis first), {server}",
                f"{lim['rps']:.0f} req/s, p99 {lim['p99_ms']:.2f} ms, non-2xx {lim['non2xx']}",
                f"an unlimited key, same server, same run: {o['rps']:.0f} req/s",
                round(lim["rps"] / o["rps"], 3),
                "measured with the reservation (issue 12: exact limits); no goal of its own",
                None,
                f"wrk -t1 -c50 -d{h.seconds}s --latency -H 'Authorization: Bearer LIMITED_KEY' URL",
            )
        )
    for server, got in ours.items():
        o, t = got["unpinned"]["wrk"], got["ten"]
        h.add(
            Figure(
                f"HTTP GET /price with 10 assets, {server}",
                f"{t['rps']:.0f} req/s, p99 {t['p99_ms']:.2f} ms",
                f"one asset, same server, same run: {o['rps']:.0f} req/s",
                round(t["rps"] / o["rps"], 3),
                ">= 0.5x the one-asset figure",
                t["rps"] >= 0.5 * o["rps"],
                f"wrk -t1 -c50 -d{h.seconds}s --latency -H 'Authorization: Bearer KEY' 'URL/price?asset={TEN}'",
            )
        )


def bench_http_and_ws(h: Harness, workers: int) -> None:
    """Per server: one `beast serve --workers N` for the HTTP figures, then the WebSocket figure on it
    (the simulator stopped first, so only the publisher's ticks reach the clients)."""
    base: dict[str, dict] = {}
    ours: dict[str, dict[str, dict]] = {}
    before, ws_figures = h.figures, []
    for server in SERVERS:
        beast = h.start_beast(workers=workers, server=server, extra_env={"BEAST_WS_MAX_PUSHES_PER_S": WS_PUSH_LIMIT})
        if not base:
            base = bare_http(h, beast, workers)
        ours[beast["served_by"]] = measure_http(h, beast)
        h.stop(beast["sim"])
        h.figures = ws_figures  # listed after the HTTP figures, which are reported once both servers ran
        try:
            bench_ws(h, beast, beast["served_by"], workers)
        finally:
            h.figures = before
        h.stop_beast(beast)
    report_http(h, workers, base, ours)
    h.figures.extend(ws_figures)


def udp_closed(h: Harness, mode: str, port: int, payload: Path) -> dict:
    return run_json(
        [
            *load_prefix(mode),
            h.py,
            str(h.bench / "loadgen.py"),
            "udp",
            "127.0.0.1",
            str(port),
            str(payload),
            str(h.seconds),
            "32",
        ]
    )


def udp_open(h: Harness, mode: str, port: int, payload: Path) -> dict:
    return run_json(
        [
            *load_prefix(mode),
            h.py,
            str(h.bench / "openloop.py"),
            "udp",
            "127.0.0.1",
            str(port),
            str(payload),
            str(OPEN_LOOP_RPS),
            str(h.seconds),
            "32",
        ]
    )


def bench_udp(h: Harness, beast: dict[str, Any], python: str) -> None:
    """UDP 2679 on `beast` (served by `python`): 32 in flight (closed loop) and 10,000/s offered (open
    loop), against a bare asyncio echo on the same interpreter."""
    from run import Figure, free_port

    version = python_version(python)
    port = int(beast["env"]["BEAST_LPO_UDP_PORT"])
    payload = h.work / "udp.json"
    payload.write_text(json.dumps({"asset": "BTC", "api_key": beast["key"]}))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(payload.read_bytes(), ("127.0.0.1", port))
        (h.work / "udp-answer.json").write_bytes(s.recvfrom(4096)[0])
    bare_port = free_port(socket.SOCK_DGRAM)
    bare = h.spawn(
        [python, str(h.bench / "bare.py"), "udp", str(bare_port), str(h.work / "udp-answer.json")], name="bare-udp"
    )
    time.sleep(1)
    for mode in MODES:
        pin(bare, mode)
        pin(beast["proc"], mode)

        b, o = udp_closed(h, mode, bare_port, payload), udp_closed(h, mode, port, payload)
        bo, oo = udp_open(h, mode, bare_port, payload), udp_open(h, mode, port, payload)
        ratio = round(o["rps"] / b["rps"], 3)
        h.add(
            Figure(
                f"UDP 2679, 32 requests in flight, Python {version}, {mode}",
                f"{o['rps']:.0f} req/s, p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms, errors {o['errors']}",
                f"bare asyncio UDP (uvloop), same bytes, same Python: {b['rps']:.0f} req/s, p99 {b['p99_ms']} ms",
                ratio,
                ">= 0.7x bare",
                ratio >= 0.7 and o["errors"] == 0,
                f"{' '.join(load_prefix(mode))} python bench/loadgen.py udp 127.0.0.1 PORT udp.json {h.seconds} 32",
            )
        )
        h.add(
            Figure(
                f"UDP 2679 latency at {OPEN_LOOP_RPS}/s offered (open loop), Python {version}, {mode}",
                f"p50 {oo['p50_ms']} ms, p99 {oo['p99_ms']} ms; {oo['achieved_rps']:.0f}/s answered, lost {oo['errors']}",
                f"bare asyncio UDP, same load: p99 {bo['p99_ms']} ms",
                round(oo["p99_ms"] / bo["p99_ms"], 3) if bo["p99_ms"] else None,
                "p99 < 1 ms",
                oo["p99_ms"] < 1 and oo["errors"] == 0,
                f"{' '.join(load_prefix(mode))} python bench/openloop.py udp 127.0.0.1 PORT udp.json"
                f" {OPEN_LOOP_RPS} {h.seconds} 32",
                "ratio = our p99 / the bare p99",
            )
        )
    h.stop(bare)
    pin(beast["proc"], "unpinned")


def _publish(h: Harness, beast: dict[str, Any], seconds: float, rate: float, mode: str) -> int:
    """Ticks into Redis at `rate`/s in total, round-robin over WS_ASSETS, from a pinned-or-not process."""
    out = subprocess.run(
        [
            *load_prefix(mode),
            h.py,
            str(h.bench / "publish.py"),
            h.redis_url,
            beast["namespace"],
            ",".join(WS_ASSETS),
            str(rate),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def bench_ws(h: Harness, beast: dict[str, Any], server: str, workers: int) -> None:
    """1,000 clients, ~100 updates/s in total over 10 assets (10/s per asset), read two ways: each
    client watching all 10 (100 updates/s per client, 100,000 deliveries/s), and each watching one
    of them (10 updates/s per client, 10,000 deliveries/s)."""
    from run import Figure

    clients = 200 if h.quick else 1000
    procs = 4
    url = beast["url"].replace("http://", "ws://") + f"/ws/prices?api_key={beast['key']}"
    for spread in (False, True):
        watched = 1 if spread else len(WS_ASSETS)
        layout = f"each watching 1 of {len(WS_ASSETS)} assets" if spread else f"x {len(WS_ASSETS)} assets"
        for mode in MODES:
            pin(beast["proc"], mode)
            settle = 2 if h.quick else 4  # for the clients to connect and subscribe
            seconds = h.seconds + settle + 2
            extra = ["spread"] if spread else []
            loaders = [
                subprocess.Popen(
                    [
                        *load_prefix(mode),
                        h.py,
                        str(h.bench / "loadgen.py"),
                        "ws",
                        url,
                        ",".join(WS_ASSETS),
                        str(clients // procs),
                        str(seconds),
                        *extra,
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(procs)
            ]
            time.sleep(settle)
            sent = _publish(h, beast, h.seconds, WS_RATE, mode)
            results = [json.loads(p.communicate(timeout=180)[0]) for p in loaders]
            deliveries = sum(r["deliveries"] for r in results)
            connected = sum(r["clients"] for r in results)
            latencies = [x for r in results for x in r["latencies_ms"]]
            p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 100 else float("nan")
            expected = round(sent * connected * watched / len(WS_ASSETS))
            h.add(
                Figure(
                    f"WS /ws/prices, {connected} clients {layout}, {server}, {workers} workers, {mode}",
                    f"{deliveries / h.seconds:.0f} deliveries/s ({deliveries} of {expected} expected),"
                    f" publish-to-receive p99 {p99:.1f} ms",
                    f"publisher: {sent} ticks at {sent / h.seconds:.0f}/s in total over {len(WS_ASSETS)} assets"
                    f" ({sent / h.seconds / len(WS_ASSETS):.0f}/s each; server's BEAST_WS_MAX_PUSHES_PER_S="
                    f"{WS_PUSH_LIMIT}, raised from 10 for this figure)",
                    round(deliveries / expected, 3) if expected else None,
                    "every update delivered; p99 < 20 ms (1,000 clients)",
                    (deliveries >= expected and p99 < 20) if not h.quick else None,
                    f"{' '.join(load_prefix(mode))} python bench/loadgen.py ws URL {','.join(WS_ASSETS)}"
                    f" {clients // procs} {seconds}{' spread' if spread else ''}  (x{procs} processes)",
                    "ratio = deliveries / updates its clients watch (ticks x clients x watched / 10): 1.0 means"
                    " none lost or coalesced (the snapshot on subscribe is not counted)",
                )
            )
    pin(beast["proc"], "unpinned")
