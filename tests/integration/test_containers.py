"""The Fargate images: each Dockerfile read, and its entrypoint run the way the container runs it.

No Docker engine here, so the image is not built: the test takes the final stage's ENV,
ENTRYPOINT, CMD and HEALTHCHECK from the Dockerfile and runs exactly that command with
that environment (loopback and free ports substituted), then stops it with SIGTERM.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import REPO, UNREACHABLE_EXCHANGES, free_port

from dockerfiles import IMAGES, Dockerfile, instructions, parse

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
        proc = subprocess.Popen(
            df.entrypoint + command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
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


# ------------------------------------------------------------------ what each image installs, run per mode
#
# No Docker engine here, so the image is not built; instead the build stage's own `pip install`
# line runs in a fresh virtual environment (the COPYed files in a scratch build context, the
# same arguments, only `--prefix` pointed at a scratch directory), and the services each
# deployment mode's task definitions start are started from that install, against loopback
# Redis and PostgreSQL. A dependency the image lacks (boto3 without the `aws` extra) fails here.


def build_stage_pip_install(image: str) -> list[str]:
    """The `pip install` arguments of the image's build stage, exactly as the Dockerfile has them."""
    runs = [
        shlex.split(args)
        for word, args in instructions((REPO / "containers" / image / "Dockerfile").read_text())
        if word == "RUN" and "pip install" in args
    ]
    [argv] = runs
    assert argv[:2] == ["pip", "install"], argv
    return argv


def build_context_copies(image: str) -> list[str]:
    """The paths the build stage COPYs from the context."""
    out = []
    for word, args in instructions((REPO / "containers" / image / "Dockerfile").read_text()):
        if word == "COPY" and not args.startswith("--from"):
            out += args.split()[:-1]
    return out


_INSTALLS: dict[tuple[str, ...], Path] = {}


def install_like_the_image(image: str, tmp_root: Path) -> Path:
    """Run the image's pip install in a fresh venv; returns the prefix (bin/, lib/.../site-packages)."""
    import shutil
    import venv

    argv = build_stage_pip_install(image)
    key = tuple(argv + build_context_copies(image))
    if key in _INSTALLS:  # both images install the same way: do it once
        return _INSTALLS[key]
    root = tmp_root / f"install-{image}"
    src = root / "src"
    src.mkdir(parents=True)
    for path in build_context_copies(image):
        source = REPO / path
        if source.is_dir():
            shutil.copytree(source, src / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, src / path)
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    prefix = root / "install"
    args = [a if not a.startswith("--prefix=") else f"--prefix={prefix}" for a in argv[2:]]
    assert any(a.startswith("--prefix=") for a in argv), "the build stage installs into a prefix the final stage copies"
    result = subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _INSTALLS[key] = prefix
    return prefix


def image_env(prefix: Path) -> dict[str, str]:
    """An environment that sees only what the image installed (the final stage copies the prefix to /usr/local)."""
    [site] = list((prefix / "lib").glob("python3*/site-packages"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BEAST_", "APP_", "REDIS_", "DATABASE_", "PYTHON", "VIRTUAL_ENV"))
    }
    python_bin = prefix.parent / "venv" / "bin"  # the fresh venv: its python3 runs the probes and `beast`
    env.update(
        {
            "PATH": os.pathsep.join([str(prefix / "bin"), str(python_bin), "/usr/bin", "/bin"]),
            "PYTHONPATH": str(site),
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    return {image: install_like_the_image(image, root) for image in IMAGES}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_install_has_the_aws_extra_and_only_the_package(image: str, installs: dict[str, Path]) -> None:
    argv = build_stage_pip_install(image)
    assert argv[-1] == ".[aws]", argv  # boto3 and Powertools: partner approvals, security groups, secrets
    env = {**image_env(installs[image]), "AWS_DEFAULT_REGION": "us-east-2", "BEAST_REGION": "us-east-2"}
    # The call that answers 503 "install trinity-beast[aws]" when boto3 is missing.
    probe = (
        "import boto3, aws_lambda_powertools, trinity_beast, sys\n"
        "from trinity_beast.domain.settings import load_settings\n"
        "from trinity_beast.services.partners.ec2 import Ec2Network\n"
        "Ec2Network.from_settings(load_settings())\n"
        "assert trinity_beast.__file__.startswith(sys.argv[1]), trinity_beast.__file__\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        ["python3", "-c", probe, str(installs[image])], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr
    # Tests and tools never reach the image.
    missing = subprocess.run(["python3", "-c", "import pytest"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0


def template_tasks() -> list[tuple[str, str, str, list[str], dict[str, str], list[int]]]:
    """(mode, task, image, command, the task's literal settings, its container ports) for every mode's task definitions."""
    from cfnstack import MODES, PARAMS, stack, transformed

    cfn = transformed()
    images = {PARAMS["LpoImageUri"]: "lpo", PARAMS["LrsImageUri"]: "lrs"}
    literal = {"APP_REPORT_SERVER", "BEAST_FEEDS", "BEAST_PREWARM", "BEAST_TRUSTED_PROXIES"}
    out = []
    for mode in MODES:
        s = stack(cfn, DeploymentMode=mode)
        for task in sorted(s.of_type("AWS::ECS::TaskDefinition")):
            c = s.container(task)
            settings = {
                e["Name"]: e["Value"] for e in c["Environment"] if e["Name"] in literal and isinstance(e["Value"], str)
            }
            ports = sorted(p["ContainerPort"] for p in c["PortMappings"] if p["Protocol"] == "tcp")
            out.append((mode, task, images[c["Image"]], c["Command"], settings, ports))
    return out


TASKS = template_tasks()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mode,task,image,command,settings,ports", TASKS, ids=[f"{t[0]}-{t[1]}" for t in TASKS])
def test_every_service_of_every_mode_starts_from_the_image_install(
    mode: str,
    task: str,
    image: str,
    command: list[str],
    settings: dict[str, str],
    ports: list[int],
    installs: dict[str, Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Runs what the task definition runs (its command, its literal settings) from what the image installed.

    The feed service's `serve --only feeds` needs the CLI of the Python side of issue 14: until
    that lands, its case fails here with argparse's "invalid choice: 'feeds'".
    """
    df = parse(REPO / "containers" / image / "Dockerfile")
    env = {**image_env(installs[image]), **df.env, **UNREACHABLE_EXCHANGES, **settings}
    port_of = {8080: "BEAST_LPO_PORT", 9090: "BEAST_LRS_PORT"}
    env.update(
        {
            "BEAST_HOST": "127.0.0.1",
            "BEAST_LPO_PORT": str(free_port()),
            "BEAST_LPO_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "BEAST_LRS_PORT": str(free_port()),
            "BEAST_LRS_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "BEAST_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": request.getfixturevalue("redis_url"),
            "BEAST_REDIS_NAMESPACE": request.getfixturevalue("redis_namespace"),
            "DATABASE_URL": request.getfixturevalue("pg_url"),
        }
    )
    err = tmp_path / "stderr"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            df.entrypoint + command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        for port in ports:
            url = f"http://127.0.0.1:{env[port_of[port]]}/health"
            deadline = time.time() + 60
            while True:
                assert proc.poll() is None, (
                    f"{mode} {task}: `beast {' '.join(command)}` exited: {err.read_text()[-3000:]}"
                )
                try:
                    health = httpx.get(url, timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.time() < deadline, f"{mode} {task}: no /health on {port}: {err.read_text()[-3000:]}"
                    time.sleep(0.2)
            assert health.status_code == 200, (mode, task, port, health.text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err.read_text(), err.read_text()[-3000:]


def test_the_cli_offers_the_feed_service_the_template_runs() -> None:
    """`beast serve --only feeds` (the feed-ingest task): lands with the Python side of issue 14."""
    feeds = [t for t in TASKS if t[1] == "FeedsTaskDefinition"]
    assert feeds and all(t[3][:3] == ["serve", "--only", "feeds"] for t in feeds)
    result = subprocess.run([str(BIN / "beast"), "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    choices = re.search(r"--only \{([^}]*)\}", result.stdout)
    assert choices and "feeds" in choices.group(1).split(","), result.stdout
