"""A private PostgreSQL (initdb + pg_ctl on a free port) for tests that need their own server:
its own settings (TLS, password checks) or a restart. The shared server on 5432 is never
touched. PostgreSQL refuses to run as root, so under root the cluster runs as `postgres`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support import free_port, reachable, require_service


def bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def _run(cmd: list[str], user: str | None, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


@dataclass
class PrivatePostgres:
    port: int
    data: Path
    bin: Path
    user: str | None  # the OS user it runs as (None: this process's own)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start (or start again after `stop`) and wait until the port answers."""
        started = _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.data / "server.log"),
                "-w",
                "-t",
                "90",
                "start",
            ],
            self.user,
        )
        assert started.returncode == 0, started.stdout + started.stderr + self.log()
        deadline = time.monotonic() + 60
        while not reachable("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "private PostgreSQL did not open its port:\n" + self.log()
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], self.user)


@contextlib.contextmanager
def private_postgres(
    conf: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
    hba: str | None = None,
    password: str | None = None,
) -> Iterator[PrivatePostgres]:
    """A started cluster (superuser `postgres`, with `password` if given): `files` written into
    its data directory (mode 0600), `conf` appended to postgresql.conf, pg_hba.conf replaced by
    `hba` when given; stopped and removed afterwards."""
    bindir = bin_dir()
    require_service("PostgreSQL server binaries under /usr/lib/postgresql/*/bin", bindir is not None)
    assert bindir is not None
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="beast-pg-"))
    data = root / "data"
    ids = pwd.getpwnam(user) if user is not None else None
    if ids is not None:
        os.chown(root, ids.pw_uid, ids.pw_gid)
    try:
        extra = []
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if ids is not None:
                os.chown(pwfile, ids.pw_uid, ids.pw_gid)
            extra = ["--pwfile", str(pwfile)]
        init = _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                *extra,
            ],
            user,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        for name, content in (files or {}).items():
            path = data / name
            path.write_bytes(content)
            path.chmod(0o600)
            if ids is not None:
                os.chown(path, ids.pw_uid, ids.pw_gid)
        port = free_port()
        settings = {
            "port": str(port),
            "listen_addresses": "'localhost'",
            "unix_socket_directories": f"'{root}'",
            "fsync": "off",
            **(conf or {}),
        }
        with open(data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        if hba is not None:
            (data / "pg_hba.conf").write_text(hba)
        server = PrivatePostgres(port, data, bindir, user)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
