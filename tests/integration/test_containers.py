"""The Fargate images: each Dockerfile read, and its entrypoint run the way the container runs it.

No Docker engine here, so the image is not built: the test takes the final stage's ENV,
ENTRYPOINT, CMD and HEALTHCHECK from the Dockerfile and runs exactly that command with
that environment (loopback and free ports substituted), then stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dockerfiles import IMAGES, Dockerfile, parse
from support import REPO, UNREACHABLE_EXCHANGES, free_port

BIN = Path(sys.executable).parent


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
# (tests/unit/test_template.py checks the template says exactly these).
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
