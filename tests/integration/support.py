"""Helpers the tests share: service checks, loopback servers, `beast` child processes.

Kept out of conftest.py so test modules can import them by a name no other folder uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from trinity_beast.domain.settings import EXCHANGES, load_settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]
# Tests never reach a real exchange: unless a test points them at the simulator, exchange
# URLs go to a closed loopback port (connection refused at once).
UNREACHABLE_EXCHANGES = {
    f"BEAST_{ex.upper()}_{kind}_URL": f"{scheme}://127.0.0.1:9/{ex}"
    for ex in EXCHANGES
    for kind, scheme in (("WS", "ws"), ("REST", "http"))
}


def require_service(service: str, reachable: bool) -> None:
    if reachable:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{service} is not reachable and CI is set: integration tests must run")
    pytest.skip(f"{service} is not reachable (set CI=true to make this a failure)")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_env(request: pytest.FixtureRequest, stack: str, tmp_path: Path) -> dict[str, str]:
    """Environment for one storage stack: embedded (memory + SQLite) or production (Redis + PostgreSQL)."""
    env = {"BEAST_DATA_DIR": str(tmp_path / "data"), "BEAST_IP_ADDRESS": "127.0.0.1", **UNREACHABLE_EXCHANGES}
    if stack == "production":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        env["BEAST_REDIS_NAMESPACE"] = request.getfixturevalue("redis_namespace")
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    return env


@dataclass
class InProcessServer:
    """A real LPO HTTP server on loopback, running in its own thread and event loop."""

    rt: Any
    url: str
    loop: asyncio.AbstractEventLoop
    admin_key: str
    admin_id: str
    sim: Any = None  # the exchange Simulator, when started with one
    app: Any = None  # the LPO ASGI app (its `hub` is the WebSocket feed)
    udp_port: int = 0
    lrs_url: str | None = None  # the LRS (reports, partners, /admin), when started with lrs=True
    udp_server: Any = None  # the UdpPriceServer (its `answered` / `unanswered` counters)
    server: str = "uvicorn"  # what serves the LPO (BEAST_SERVER in the env; the LRS stays on uvicorn)

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the server's loop (e.g. write a tick into its cache)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def create_key(
        self, tier: str = "subscriber", monthly_limit: int | None = None, name: str = "test"
    ) -> tuple[str, str]:
        from trinity_beast.domain.keys import new_key

        key, secret = new_key(name, tier, monthly_limit)
        self.rt.db.insert_key(key)
        return key.id, secret


@contextlib.contextmanager
def in_process_server(
    env: dict[str, str], sim: bool = False, feeds: bool = False, lrs: bool = False, **sim_options: Any
) -> Iterator[InProcessServer]:
    """`beast serve` in this process: optional simulator (every exchange pointed at it), feeds and LRS;
    the LPO served by what BEAST_SERVER in `env` names (uvicorn by default, or granian)."""
    from beast_sim import Simulator
    from trinity_beast.services.prices.ingest import start_feeds
    from trinity_beast.services.runtime import Runtime, ensure_admin_key
    from trinity_beast.transports.http.lpo import build_lpo
    from trinity_beast.transports.server import bind_tcp, bind_udp, make_server, serve_granian
    from trinity_beast.transports.udp.lpo import UdpPriceServer

    env = {**env, "BEAST_LPO_PORT": str(free_port())}
    settings = load_settings(env)
    loop = asyncio.new_event_loop()
    simulator = None
    if sim:
        simulator = Simulator(**{"seed": 3, "push_interval_s": 0.05, **sim_options})
        loop.run_until_complete(simulator.start())
        only = env.get("TEST_SIM_ONLY")  # point just these exchanges at the simulator
        names = only.split(",") if only else list(simulator.ws_urls)
        settings = dataclasses.replace(
            settings,
            ws_url_overrides={**settings.ws_url_overrides, **{n: simulator.ws_urls[n] for n in names}},
            rest_url_overrides={**settings.rest_url_overrides, **{n: simulator.rest_urls[n] for n in names}},
        )
    rt = Runtime.create(settings)
    created = ensure_admin_key(rt.db)
    assert created is not None
    key, secret = created
    sock = bind_tcp("127.0.0.1", settings.lpo_port, "BEAST_LPO_PORT")
    udp_sock = bind_udp("127.0.0.1", 0, "BEAST_LPO_UDP_PORT")
    app = build_lpo(rt)
    srv = make_server(app, "warning", settings)
    lrs_srv = lrs_sock = None
    if lrs:
        from trinity_beast.transports.http.lrs import build_lrs

        lrs_sock = bind_tcp("127.0.0.1", 0, "BEAST_LRS_PORT")
        lrs_srv = make_server(build_lrs(rt), "warning", settings)
    ready = threading.Event()
    stop = asyncio.Event()  # ends a granian-served LPO (uvicorn's ends by should_exit)
    udp_holder: list[Any] = [None]

    async def main() -> None:
        await rt.start()
        udp, udp_holder[0] = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: UdpPriceServer(rt), sock=udp_sock
        )
        if feeds:
            await start_feeds(rt)
        if settings.server == "granian":
            srv.started = True  # the socket listens already: granian takes its connections once it runs
            task = asyncio.create_task(serve_granian(app, sock, "warning", settings, stop))
        else:
            task = asyncio.create_task(srv.serve(sockets=[sock]))
        lrs_task = None if lrs_srv is None else asyncio.create_task(lrs_srv.serve(sockets=[lrs_sock]))
        while not srv.started or (lrs_srv is not None and not lrs_srv.started):
            await asyncio.sleep(0.01)
        ready.set()
        await task
        if lrs_task is not None:
            await lrs_task
        udp.close()
        await rt.stop()
        if simulator is not None:
            await simulator.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(15), "server did not start"
    try:
        yield InProcessServer(
            rt,
            f"http://127.0.0.1:{settings.lpo_port}",
            loop,
            secret,
            key.id,
            simulator,
            app,
            udp_sock.getsockname()[1],
            None if lrs_sock is None else f"http://127.0.0.1:{lrs_sock.getsockname()[1]}",
            udp_holder[0],
            settings.server,
        )
    finally:
        srv.should_exit = True
        loop.call_soon_threadsafe(stop.set)
        if lrs_srv is not None:
            lrs_srv.should_exit = True
        thread.join(15)
        loop.close()


@dataclass
class BeastProcess:
    proc: subprocess.Popen
    url: str
    env: dict[str, str]
    first_output: str
    stderr_path: Path


def run_beast(args: list[str], env: dict[str, str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "trinity_beast", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def start_beast_serve(env: dict[str, str], cwd: Path, args: tuple[str, ...] = ()) -> BeastProcess:
    """`beast serve` as a child process; returns once /health answers."""
    env = {**env}
    env.setdefault("BEAST_LPO_PORT", str(free_port()))
    env.setdefault("BEAST_LRS_PORT", str(free_port()))
    env.setdefault("BEAST_LPO_UDP_PORT", str(free_port(socket.SOCK_DGRAM)))
    env.setdefault("BEAST_LRS_UDP_PORT", str(free_port(socket.SOCK_DGRAM)))
    tag = uuid.uuid4().hex[:6]
    out_path, err_path = cwd / f"serve-{tag}.out", cwd / f"serve-{tag}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trinity_beast", "serve", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=out,
            stderr=err,
        )
    url = f"http://127.0.0.1:{env['BEAST_LPO_PORT']}"
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"beast serve exited early: {err_path.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("beast serve did not answer /health in 30 s")
    return BeastProcess(proc, url, env, out_path.read_text(), err_path)


def stop_beast(p: BeastProcess) -> tuple[int, str]:
    """SIGTERM, as a container stop sends; returns (exit code, stderr)."""
    p.proc.terminate()
    try:
        p.proc.wait(20)
    except subprocess.TimeoutExpired:
        p.proc.kill()
        p.proc.wait()
    return p.proc.returncode, p.stderr_path.read_text()


def put_btc(env: dict[str, str], price: str = "65000.5", exchange: str = "kraken") -> None:
    """Write a fresh BTC price into the Redis namespace of `env`, as any process could."""
    from decimal import Decimal

    from trinity_beast.domain.tick import Tick
    from trinity_beast.stores.cache.redis import RedisCache

    async def write() -> None:
        cache = RedisCache(env["REDIS_URL"], namespace=env["BEAST_REDIS_NAMESPACE"])
        now = time.time()
        await cache.put_tick(Tick("BTC", "USD", Decimal(price), None, None, exchange, now, now))
        await cache.close()

    asyncio.run(write())


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds (in a running event loop); fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def udp_exchange(server: Any, port: int, payload: bytes, deadline_s: float = 10.0) -> bytes | None:
    """Send one datagram and return the answer, or None once `server` (a DatagramServer) has
    counted it as handled without an answer (the anti-amplification rule). No fixed wait: it
    polls the socket and the server's counters until one of them says what happened."""
    before = server.answered
    unanswered = server.unanswered
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        sock.sendto(payload, ("127.0.0.1", port))
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                return sock.recvfrom(65536)[0]
            except TimeoutError:
                pass
            if server.unanswered > unanswered and server.answered > before:
                return None  # handled, and counted as not sent (datagrams here go one at a time)
    raise AssertionError("the datagram was neither answered nor counted as unanswered")
