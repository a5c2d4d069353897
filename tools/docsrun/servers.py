"""The servers the examples run against: `beast serve --sim` on free ports (embedded default),
and the README's own Redis + PostgreSQL command, each started as a user would and stopped after.

Nothing here touches the shared services beyond a fresh PostgreSQL database (dropped after)
and a Redis namespace of its own (deleted after).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from docsrun.blocks import ROOT

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
BEAST = [sys.executable, "-m", "trinity_beast"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running `beast serve`: its ports, its first-start output and admin key."""

    stack: str
    proc: subprocess.Popen
    ports: dict[str, int]
    workdir: Path
    first_output: str = ""
    key: str = ""
    key_id: str = ""
    sim_port: int = 0
    cleanups: list = field(default_factory=list)
    cli_env: dict[str, str] = field(default_factory=dict)  # where `beast keys` finds this server's database
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def key_of(self, tier: str) -> tuple[str, str]:
        """(id, secret) of a key of `tier`: the first admin key, or one made with `beast keys create`."""
        if tier == "admin":
            return self.key_id, self.key
        if tier not in self._keys:
            result = subprocess.run(
                [*BEAST, "keys", "create", "--name", f"docs-{tier}", "--tier", tier, "--json"],
                env={**os.environ, **self.cli_env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode != 0:
                raise RuntimeError(f"beast keys create failed: {result.stderr}")
            made = json.loads(result.stdout)
            self._keys[tier] = (made["id"], made["key"])
        return self._keys[tier]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['BEAST_LPO_PORT']}"

    @property
    def lrs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['BEAST_LRS_PORT']}"

    def substitutions(self) -> dict[str, str]:
        """Documented default port -> this server's port."""
        return {
            "8080": str(self.ports["BEAST_LPO_PORT"]),
            "9090": str(self.ports["BEAST_LRS_PORT"]),
            "2679": str(self.ports["BEAST_LPO_UDP_PORT"]),
            "2680": str(self.ports["BEAST_LRS_UDP_PORT"]),
        }

    def log(self) -> str:
        return (self.workdir / "serve.err").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the process group: `make run` and its beast
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for cleanup in reversed(self.cleanups):
            cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _ports() -> dict[str, int]:
    return {
        "BEAST_LPO_PORT": free_port(),
        "BEAST_LRS_PORT": free_port(),
        "BEAST_LPO_UDP_PORT": free_port(socket.SOCK_DGRAM),
        "BEAST_LRS_UDP_PORT": free_port(socket.SOCK_DGRAM),
    }


def _wait_ready(server: Server, deadline_s: float = 90) -> None:
    """Until /health answers and the first start's lines (if any) are out; then read the key."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"beast serve ({server.stack}) exited early: {server.log()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        server.stop()
        raise RuntimeError(f"beast serve ({server.stack}) did not answer /health in {deadline_s:.0f} s: {server.log()}")
    server.first_output = (server.workdir / "serve.out").read_text()
    key = re.search(r"^\s*key:\s*(tbk_\S+)", server.first_output, re.M)
    key_id = re.search(r"^\s*id:\s*(ak_\S+)", server.first_output, re.M)
    if not key or not key_id:
        server.stop()
        raise RuntimeError(f"beast serve ({server.stack}) printed no first admin key: {server.first_output!r}")
    server.key, server.key_id = key.group(1), key_id.group(1)


def _spawn(stack: str, command: list[str], env: dict[str, str], workdir: Path, cwd: Path) -> subprocess.Popen:
    with open(workdir / "serve.out", "w") as out, open(workdir / "serve.err", "w") as err:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True)


def start_embedded(extra_env: dict[str, str] | None = None) -> Server:
    """`beast serve --sim` on free ports with a fresh data directory (what `make run` runs)."""
    workdir = Path(tempfile.mkdtemp(prefix="beast-docs-"))
    ports = _ports()
    sim_port = free_port()
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "BEAST_DATA_DIR": str(workdir / "data"),
        **(extra_env or {}),
    }
    for name in ("REDIS_URL", "DATABASE_URL", "DATABASE_SECRET", "DATABASE_SECRET_ARN"):
        env.pop(name, None)
    proc = _spawn("embedded", [*BEAST, "serve", "--sim", "--sim-port", str(sim_port)], env, workdir, workdir)
    server = Server(
        "embedded", proc, ports, workdir, sim_port=sim_port, cli_env={"BEAST_DATA_DIR": str(workdir / "data")}
    )
    _wait_ready(server)
    return server


def fresh_database() -> tuple[str, Callable[[], None]]:
    """A new, empty PostgreSQL database next to PG_URL's, and the function that drops it."""
    import pg8000.native

    from trinity_beast.stores.db.postgres import connect_args

    name = "beast_docs_" + uuid.uuid4().hex[:10]
    admin = pg8000.native.Connection(**connect_args(PG_URL))
    admin.run(f"CREATE DATABASE {name}")
    admin.close()

    def drop() -> None:
        conn = pg8000.native.Connection(**connect_args(PG_URL))
        conn.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()",
            n=name,
        )
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.close()

    return PG_URL.rsplit("/", 1)[0] + "/" + name, drop


def start_documented(command: str, stack: str) -> Server:
    """Run a documented start command (e.g. `REDIS_URL=… DATABASE_URL=… make run`) from the
    repository root, on free ports, with its Redis URL and PostgreSQL URL pointed at a private
    namespace and a fresh database of the test services."""
    import redis

    workdir = Path(tempfile.mkdtemp(prefix="beast-docs-"))
    ports = _ports()
    namespace = "docs" + uuid.uuid4().hex[:10]
    db_url, drop = fresh_database()
    command = re.sub(r"redis://127\.0\.0\.1:6379/\d+", REDIS_URL, command)
    command = re.sub(r"postgresql://postgres@127\.0\.0\.1:5432/test\b", db_url, command)
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "BEAST_DATA_DIR": str(workdir / "data"),
        "BEAST_REDIS_NAMESPACE": namespace,
    }
    proc = _spawn(stack, ["bash", "-c", command], env, workdir, ROOT)
    server = Server(stack, proc, ports, workdir, cli_env={"DATABASE_URL": db_url})

    def forget_namespace() -> None:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    server.cleanups += [drop, forget_namespace]
    try:
        _wait_ready(server)
    except Exception:
        for cleanup in reversed(server.cleanups):
            cleanup()
        raise
    return server
