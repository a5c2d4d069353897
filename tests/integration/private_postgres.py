"""A private PostgreSQL (initdb + pg_ctl on a free port) for tests that need their own server
settings (TLS here), never the shared one on 5432. Run as the `postgres` user when the tests
run as root, since PostgreSQL refuses to start as root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from support import free_port, reachable


def bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@dataclass
class PrivatePostgres:
    port: int
    data: Path
    bin: Path
    user: str | None  # the OS user it runs as (None: this process's own)

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(cmd: list[str], user: str | None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=120, check=False, **kw)


def start(conf: dict[str, str], files: dict[str, bytes], hba: str, password: str | None = None) -> Iterator[PrivatePostgres]:
    """Initialise a cluster (superuser `postgres`, with `password` if given), write `files` into
    its data directory (mode 0600), append `conf` to postgresql.conf, replace pg_hba.conf with
    `hba`, start it, yield it, then stop it."""
    bindir = bin_dir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="beast-pg-"))
    data = root / "data"
    if user is not None:
        ids = pwd.getpwnam(user)
        os.chown(root, ids.pw_uid, ids.pw_gid)
    try:
        extra = []
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if user is not None:
                os.chown(pwfile, ids.pw_uid, ids.pw_gid)
            extra = ["--pwfile", str(pwfile)]
        init = _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", *extra], user)
        assert init.returncode == 0, init.stdout + init.stderr
        for name, content in files.items():
            path = data / name
            path.write_bytes(content)
            path.chmod(0o600)
            if user is not None:
                os.chown(path, ids.pw_uid, ids.pw_gid)
        port = free_port()
        settings = {"port": str(port), "listen_addresses": "'localhost'", "unix_socket_directories": f"'{root}'",
                    "fsync": "off", **conf}
        with open(data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        (data / "pg_hba.conf").write_text(hba)
        server = PrivatePostgres(port, data, bindir, user)
        started = _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "90", "start"], user)
        assert started.returncode == 0, started.stdout + started.stderr + server.log()
        deadline = time.monotonic() + 60
        while not reachable("127.0.0.1", port):
            assert time.monotonic() < deadline, "private PostgreSQL did not open its port:\n" + server.log()
            time.sleep(0.1)
        try:
            yield server
        finally:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user)
    finally:
        shutil.rmtree(root, ignore_errors=True)
