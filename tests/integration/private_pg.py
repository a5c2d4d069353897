"""A private PostgreSQL server for tests that stop and restart the database.

The shared server (127.0.0.1:5432) is never touched: `initdb` + `pg_ctl` make a cluster in a
temporary directory on a free port. PostgreSQL refuses to run as root, so when the tests run
as root the cluster belongs to the `postgres` user (`runuser`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import free_port, reachable


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.skip(f"{name} not installed")
    return found[-1]


@dataclass
class PrivatePostgres:
    datadir: Path
    port: int
    log: Path
    user: str | None  # run as this user (root cannot run PostgreSQL)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        deadline = time.time() + 60
        while not reachable("127.0.0.1", self.port):
            assert time.time() < deadline, "private PostgreSQL did not start: " + self.log.read_text()[-2000:]
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop", check=False)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            pytest.skip("running as root without a postgres user to run PostgreSQL as")
    root = Path(tempfile.mkdtemp(prefix="beast-pg-"))
    datadir = root / "data"
    if user is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    pg = PrivatePostgres(datadir, free_port(), root / "pg.log", user)
    pg._run(_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if user is not None:
        os.chown(pg.log.parent, owner.pw_uid, owner.pw_gid)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
