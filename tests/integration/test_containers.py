"""The Fargate images: each Dockerfile read, and its entrypoint run the way the container runs it.

No Docker engine here, so the image is not built: the test takes the final stage's ENV,
ENTRYPOINT, CMD and HEALTHCHECK from the Dockerfile and runs exactly that command with
that environment (loopback and free ports substituted), then stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support import REPO, UNREACHABLE_EXCHANGES, free_port

BIN = Path(sys.executable).parent


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile: what the running container gets."""

    stages: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    expose: list[str] = field(default_factory=list)
    healthcheck: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def parse(path: Path) -> Dockerfile:
    df = Dockerfile()
    for word, args in instructions(path.read_text()):
        if word == "FROM":
            df.stages.append(args)
            df.env, df.user, df.expose, df.copies = {}, "", [], []  # only the final stage runs
        elif word == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                df.env[name] = value
        elif word == "USER":
            df.user = args
        elif word == "EXPOSE":
            df.expose += args.split()
        elif word == "HEALTHCHECK":
            df.healthcheck = args
        elif word == "ENTRYPOINT":
            df.entrypoint = json.loads(args)  # exec form, or json.loads fails the test
        elif word == "CMD":
            df.cmd = json.loads(args)
        elif word == "COPY":
            df.copies.append(args)
    return df


IMAGES = {
    # image: (port setting, UDP port setting, ports the image exposes, `beast serve` scope)
    "lpo": ("BEAST_LPO_PORT", "BEAST_LPO_UDP_PORT", ["8080/tcp", "2679/udp"], ["serve", "--only", "lpo"]),
    "lrs": ("BEAST_LRS_PORT", "BEAST_LRS_UDP_PORT", ["9090/tcp", "2680/udp"], ["serve", "--only", "lrs"]),
}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_slim_non_root_and_exec_form(image: str) -> None:
    port_setting, udp_setting, exposed, command = IMAGES[image]
    df = parse(REPO / "containers" / image / "Dockerfile")
    assert all(stage.startswith("python:3.11-slim") for stage in df.stages), df.stages
    assert df.user and df.user.split(":")[0] not in ("root", "0"), "the service must not run as root"
    assert df.expose == exposed
    assert df.env[port_setting] == exposed[0].split("/")[0] and df.env[udp_setting] == exposed[1].split("/")[0]
    assert df.env["BEAST_HOST"] == "0.0.0.0" and df.env["PYTHONUNBUFFERED"] == "1"
    assert df.entrypoint == ["beast"] and df.cmd == command
    assert "--interval=" in df.healthcheck and "/health" in df.healthcheck and port_setting in df.healthcheck
    if image == "lpo":
        assert df.env["APP_REPORT_SERVER"] == "false"
    # Only the installed package reaches the final image, not the build context.
    assert df.copies == ["--from=build /install /usr/local"]


def test_dockerignore_keeps_only_the_package_in_the_context() -> None:
    lines = [l for l in (REPO / ".dockerignore").read_text().splitlines() if l and not l.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!layers/common/"} <= set(lines)
    build_copies = [a for w, a in instructions((REPO / "containers/lpo/Dockerfile").read_text()) if w == "COPY"]
    for args in build_copies[:-1]:
        for source in args.split()[:-1]:
            assert (REPO / source).exists(), source


def container_env(df: Dockerfile, port_setting: str, udp_setting: str, tmp_path: Path) -> dict[str, str]:
    """The image's ENV with loopback, free ports and a scratch data dir in place of the container's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEAST_", "APP_", "REDIS_", "DATABASE_"))}
    env.update(df.env)
    env.update(UNREACHABLE_EXCHANGES)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "BEAST_HOST": "127.0.0.1",
            port_setting: str(free_port()),
            udp_setting: str(free_port(socket.SOCK_DGRAM)),
            "BEAST_DATA_DIR": str(tmp_path / "data"),
            "BEAST_PREWARM": "false",
        }
    )
    return env


# The image's own CMD, then the commands the task definitions give it per deployment mode
# (tests/test_template.py checks the template says exactly these).
RUNS = [
    ("lpo", None, {}),
    ("lpo", ["serve", "--only", "lpo", "--no-sync"], {}),  # independent, hybrid
    ("lpo", ["serve"], {"APP_REPORT_SERVER": "true"}),  # combined: LPO and LRS in one container
    ("lrs", None, {}),
    ("lrs", ["serve", "--only", "lrs", "--no-sync"], {}),  # independent
    ("lrs", ["serve", "--only", "lrs"], {}),  # hybrid: the LRS task syncs
]


@pytest.mark.parametrize("image,command,task_env", RUNS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_entrypoint_serves_health_and_exits_cleanly_on_sigterm(
    image: str, command: list[str] | None, task_env: dict[str, str], tmp_path: Path
) -> None:
    port_setting, udp_setting, _, _ = IMAGES[image]
    df = parse(REPO / "containers" / image / "Dockerfile")
    env = {**container_env(df, port_setting, udp_setting, tmp_path), **task_env}
    combined = env.get("APP_REPORT_SERVER") == "true" and command == ["serve"]
    if combined:
        env["BEAST_LRS_PORT"] = str(free_port())
        env["BEAST_LRS_UDP_PORT"] = str(free_port(socket.SOCK_DGRAM))
    command = df.cmd if command is None else command
    url = f"http://127.0.0.1:{env[port_setting]}/health"
    err = tmp_path / "stderr"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(df.entrypoint + command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, f"{image} exited early: {err.read_text()}"
            try:
                health = httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, f"{image} never answered /health: {err.read_text()}"
                time.sleep(0.1)
        assert health.status_code == 200
        assert health.json()["status"].startswith("✅ [" + image.upper() + "]")
        # The image's own HEALTHCHECK command, as Docker would run it (shell form, in the image's env).
        check = df.healthcheck.split(" CMD ", 1)[1]
        assert subprocess.run(["sh", "-c", check], env=env, timeout=10).returncode == 0
        [serving] = [line for line in err.read_text().splitlines() if "serving: " in line]
        other = "LRS" if image == "lpo" else "LPO"
        assert f"{image.upper()} http://" in serving and (f"{other} http://" in serving) == combined, serving
        assert ("usage sync left to a separate job" in serving) == ("--no-sync" in command), serving
        if combined:
            lrs = httpx.get(f"http://127.0.0.1:{env['BEAST_LRS_PORT']}/health", timeout=5)
            assert lrs.json()["status"].startswith("✅ [LRS]")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = err.read_text()
    assert "flushing usage" in log and log.rstrip().endswith("stopped"), log
    assert "Traceback" not in log, log
    # After SIGTERM nothing listens on the port any more (TIME_WAIT connections may remain).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(env[port_setting])))
