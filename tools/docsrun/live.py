"""Running the examples that run here against a live server, and checking what they answer
against what the page says (status, fields, sizes)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from docsrun.blocks import ROOT, Block, backticked
from docsrun.compare import at, differences
from docsrun.servers import BEAST, Server, free_port

# Wraps curl so each call's status and body land in files: the documented line runs verbatim.
CURL_WRAPPER = 'curl() { DOCS_N=$((DOCS_N+1)); command curl -sS -o "$DOCS_OUT/$DOCS_N.body" -w "%{http_code}" "$@" > "$DOCS_OUT/$DOCS_N.status"; }\nDOCS_N=0\n'


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Context:
    """What one stack's run has seen so far: the server and the last answers of an example."""

    server: Server
    answers: list[Answer] = field(default_factory=list)


def substitute(text: str, server: Server) -> str:
    for default, port in server.substitutions().items():
        text = re.sub(rf"(?<![\d.]){default}(?!\d)", port, text)
    return text.replace("YOUR_KEY", server.key)


def run_sh(block: Block, ctx: Context) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="beast-docs-sh-") as tmp:
        return _run_sh(block, ctx, Path(tmp))


def _run_sh(block: Block, ctx: Context, out: Path) -> list[str]:
    script = CURL_WRAPPER + substitute(block.text, ctx.server)
    env = {**os.environ, "KEY": ctx.server.key, "DOCS_OUT": str(out)}
    if "until" in block.options:  # a command that serves until stopped: run it until it says what it should
        script = re.sub(r"(?<!\d)9700(?!\d)", str(free_port()), script)  # beast sim's default port, made free
        return run_until(["bash", "-c", script], env, block)
    result = subprocess.run(
        ["bash", "-e", "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        return [f"exit code {result.returncode}: {result.stderr.strip()[-500:]}"]
    count = len(list(out.glob("*.status")))
    ctx.answers = [
        Answer(int((out / f"{i}.status").read_text()), (out / f"{i}.body").read_bytes()) for i in range(1, count + 1)
    ]
    if not ctx.answers:
        return ["the block made no request"]
    wanted = block.options.get("status", "200").split(",")
    if len(wanted) == 1:
        wanted *= len(ctx.answers)
    return [
        f"request {i + 1}: documented status {w}, answered {a.status}: {a.body[:300]!r}"
        for i, (w, a) in enumerate(zip(wanted, ctx.answers, strict=False))
        if int(w) != a.status
    ]


def run_python(block: Block, ctx: Context) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="beast-docs-py-") as tmp:
        script = Path(tmp) / "example.py"
        script.write_text(substitute(block.text, ctx.server))
        return run_until([sys.executable, str(script)], dict(os.environ), block)


def run_until(command: list[str], env: dict[str, str], block: Block) -> list[str]:
    """Run an example; it passes once its output matches `until` (then it is stopped: feeds
    and servers run forever), or when it exits 0 with no `until`."""
    until = re.compile(block.options["until"]) if "until" in block.options else None
    timeout = float(block.options.get("timeout", "60"))
    with tempfile.TemporaryDirectory(prefix="beast-docs-run-") as tmp:
        return _run_until(command, env, until, timeout, Path(tmp) / "out")


def _run_until(
    command: list[str], env: dict[str, str], until: re.Pattern | None, timeout: float, out_path: Path
) -> list[str]:
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            text = out_path.read_text()
            if until and until.search(text):
                return []
            if proc.poll() is not None:
                text = out_path.read_text()
                if proc.returncode != 0:
                    return [f"exit code {proc.returncode}: {text[-500:]}"]
                if until and not until.search(text):
                    return [f"output never matched {until.pattern!r}: {text[-500:]}"]
                return []
            time.sleep(0.1)
        return [
            f"no {'match for ' + repr(until.pattern) if until else 'exit'} within {timeout:g} s: {out_path.read_text()[-500:]}"
        ]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the example and what it started
            proc.wait()


def first_ws_price(ctx: Context, asset: str) -> Any:
    """The first price update /ws/prices pushes for `asset` (after the subscription answer)."""
    import asyncio

    from websockets.asyncio.client import connect

    async def get() -> Any:
        url = ctx.server.url.replace("http", "ws") + f"/ws/prices?api_key={ctx.server.key}"
        async with connect(url) as ws:
            await ws.send(json.dumps({"subscribe": [asset]}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if isinstance(message.get("data"), dict) and message["data"].get("type") == "price":
                    return message

    return asyncio.run(get())


def udp(port: int, request: dict[str, Any]) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(30)
        sock.sendto(json.dumps(request).encode(), ("127.0.0.1", port))
        return sock.recvfrom(65536)[0]


def source_answer(block: Block, ctx: Context) -> Any:
    """The real answer a documented JSON block shows: the previous example's (`of=N`, default
    its last request), the first WebSocket push for `ws=ASSET`, or a UDP answer (`udp=lpo|lrs`)."""
    if "ws" in block.options:
        return first_ws_price(ctx, block.options["ws"])
    if "udp" in block.options:
        port = ctx.server.ports["BEAST_LRS_UDP_PORT" if block.options["udp"] == "lrs" else "BEAST_LPO_UDP_PORT"]
        _, secret = ctx.server.key_of(block.options.get("key", "admin"))
        request = json.loads(block.options.get("request", "{}").replace("KEY", secret))
        return json.loads(udp(port, request))
    if not ctx.answers:
        raise LookupError("no example ran before this expected answer")
    return ctx.answers[int(block.options.get("of", len(ctx.answers))) - 1].json()


def check_expect(block: Block, ctx: Context) -> list[str]:
    key_id, _ = ctx.server.key_of(block.options.get("key", "admin"))
    documented = json.loads(block.text.replace("ak_3f1c9a0e5b7d2468", key_id))
    real = at(source_answer(block, ctx), block.options.get("at", ""))
    exact = set(filter(None, block.options.get("exact", "").split(",")))
    return differences(documented, real, exact, depth=int(block.options.get("depth", "99")))


def line_pattern(line: str, server: Server) -> re.Pattern:
    """A documented output line as a pattern: ids, keys and ports are this run's."""
    pattern = re.escape(substitute(line, server).rstrip())
    pattern = re.sub(r"ak_[0-9a-f]+", r"ak_[0-9a-f]{16}", pattern)
    pattern = pattern.replace("tbk_…", r"tbk_[A-Za-z0-9_\-]+")
    return re.compile(pattern + r"\s*$")


def check_first_start(block: Block, ctx: Context) -> list[str]:
    documented = [line for line in block.text.splitlines() if line.strip()]
    real = [line for line in ctx.server.first_output.splitlines() if line.strip()]
    if len(documented) != len(real):
        return [f"documented {len(documented)} line(s), printed {len(real)}: {real}"]
    return [
        f"documented {d!r}, printed {r!r}"
        for d, r in zip(documented, real, strict=True)
        if not line_pattern(d, ctx.server).match(r)
    ]


def check_output(block: Block, ctx: Context) -> list[str]:
    """`beast ARGS` with `env` prints exactly the block (on `stream`, default stderr), exit code `exit`."""
    env = dict(pair.split("=", 1) for pair in block.options.get("env", "").split() if pair)
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [*BEAST, *block.options["args"].split()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "BEAST_DATA_DIR": tmp, **env},
        )
    printed = (result.stdout if block.options.get("stream") == "stdout" else result.stderr).strip()
    problems = [] if printed == block.text.strip() else [f"documented {block.text.strip()!r}, printed {printed!r}"]
    if "exit" in block.options and result.returncode != int(block.options["exit"]):
        problems.append(f"documented exit code {block.options['exit']}, got {result.returncode}")
    return problems


def number(cell: str) -> float:
    found = re.search(r"\d[\d,]*(?:\.\d+)?", cell)
    if not found:
        raise ValueError(f"no number in {cell!r}")
    return float(found.group().replace(",", ""))


def check_udp_sizes(block: Block, ctx: Context) -> list[str]:
    """The size table against datagrams measured now: answer bytes for 1..N assets, in the
    registry's order, until the 4,096-byte limit turns the answer into a 413."""
    listing = httpx.get(ctx.server.url + "/ws/assets", timeout=10).json()["data"]["assets"]
    names = [a["asset"] for a in listing]
    sizes: dict[int, int] = {}
    for n in range(1, 40):
        body = udp(ctx.server.ports["BEAST_LPO_UDP_PORT"], {"asset": names[:n], "api_key": ctx.server.key})
        if json.loads(body)["status_code"] != 200:
            break
        sizes[n] = len(body)
    fit = max(sizes)
    measured = {
        "one": sizes[1],
        "each": (sizes[fit] - sizes[1]) / (fit - 1),
        "frame": max(n for n, size in sizes.items() if size <= 1400),
        "fit": fit,
    }
    problems = []
    for name, row in zip(block.options["rows"].split(","), block.rows, strict=True):
        documented = number(row[1])
        slack = {"frame": 1, "fit": 1, "one": 0.05 * measured[name]}.get(name, 0.1 * measured[name])
        if abs(documented - measured[name]) > slack:
            problems.append(f"{row[0]}: documented {row[1]}, measured {measured[name]:.0f}")
    return problems


def check_fields(block: Block, ctx: Context) -> list[str]:
    """The table's first-column `names` are exactly the fields at `at` of GET `get`'s answer."""
    url = (
        ctx.server.url
        + block.options["get"]
        + ("&" if "?" in block.options["get"] else "?")
        + f"api_key={ctx.server.key}"
    )
    real = at(httpx.get(url, timeout=30).json(), block.options.get("at", ""))
    documented = {name for row in block.rows for name in backticked(row[0])}
    problems = []
    if documented - set(real):
        problems.append(f"documented but not answered: {', '.join(sorted(documented - set(real)))}")
    if set(real) - documented:
        problems.append(f"answered but not documented: {', '.join(sorted(set(real) - documented))}")
    return problems
