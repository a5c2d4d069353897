"""Every failure at start-up or in a CLI command is one line naming the setting or the cause
and what to do, exit code 2 (docs/configuration.md): `beast` run as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, run_beast

ONE_LINE = 2  # the exit code of every such failure


def assert_one_line(result: subprocess.CompletedProcess, starts: str, *mentions: str) -> str:
    """stderr is exactly one line starting with `starts`, mentioning each of `mentions`; exit code 2."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == ONE_LINE, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(starts), lines[0]
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def down_postgres_url() -> str:
    """A PostgreSQL URL nothing answers: a loopback port we just found closed."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test"


@pytest.mark.parametrize(
    "args", [["serve"], ["migrate"], ["keys", "list"], ["keys", "create", "--name", "a", "--tier", "admin"]]
)
def test_a_database_that_is_down(tmp_path: Path, args: list[str]) -> None:
    result = run_beast(args, {"DATABASE_URL": down_postgres_url(), "BEAST_DATA_DIR": str(tmp_path)})
    assert_one_line(
        result,
        "beast: DATABASE_URL: cannot connect to PostgreSQL",
        "check that the database is running and DATABASE_URL points at it",
    )
    assert result.stdout == ""


def test_a_database_host_that_does_not_resolve(tmp_path: Path) -> None:
    result = run_beast(["keys", "list"], {"DATABASE_URL": "postgresql://postgres@no-such-host.invalid:5432/test"})
    assert_one_line(result, "beast: DATABASE_URL: cannot connect to PostgreSQL", "no-such-host.invalid")


@pytest.mark.parametrize("args", [["serve"], ["migrate"], ["keys", "list"]])
def test_a_data_dir_that_cannot_be_written(tmp_path: Path, args: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_beast(args, {"BEAST_DATA_DIR": str(blocker / "data")})
    assert_one_line(
        result,
        "beast: BEAST_DATA_DIR: cannot write the SQLite database",
        str(blocker / "data"),
        "set BEAST_DATA_DIR to a directory beast may write",
    )
    assert blocker.read_text() == "not a directory"


def test_a_sqlite_url_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_beast(["migrate"], {"DATABASE_URL": f"sqlite:///{blocker}/beast.db"})
    assert_one_line(result, "beast: DATABASE_URL: cannot write the SQLite database", "set DATABASE_URL")


def run_without(modules: tuple[str, ...], args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`beast ARGS` in an interpreter where `modules` cannot be imported, as when the optional extra
    that brings them was not installed (Python's own ImportError for a module mapped to None)."""
    code = (
        "import sys\n"
        f"for name in {modules!r}: sys.modules[name] = None\n"
        "from trinity_beast.app.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


AWS_EXTRA = ("boto3", "botocore", "aws_lambda_powertools")


def test_database_secret_arn_without_the_aws_extra(tmp_path: Path) -> None:
    env = {
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-2:123456789012:secret:db",
        "AWS_DEFAULT_REGION": "us-east-2",
    }
    for args in (["serve"], ["migrate"]):
        result = run_without(AWS_EXTRA, args, env)
        assert_one_line(result, "beast: invalid setting DATABASE_SECRET_ARN", "trinity-beast[aws]")


def test_admin_key_secret_without_the_aws_extra(tmp_path: Path) -> None:
    env = {
        "BEAST_ADMIN_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-2:123456789012:secret:admin",
        "BEAST_DATA_DIR": str(tmp_path),
        "BEAST_LPO_PORT": str(free_port()),
        "BEAST_LRS_PORT": str(free_port()),
    }
    result = run_without(AWS_EXTRA, ["serve"], env)
    assert_one_line(result, "beast: BEAST_ADMIN_KEY_SECRET_ARN: writing the key needs trinity-beast[aws]")
    keys = run_beast(["keys", "list", "--json"], {"BEAST_DATA_DIR": str(tmp_path)})
    assert keys.returncode == 0 and keys.stdout.strip() == "[]", "no key was made that nobody can read"


@pytest.mark.parametrize(
    "kind,setting",
    [
        (socket.SOCK_STREAM, "BEAST_LPO_PORT"),
        (socket.SOCK_STREAM, "BEAST_LRS_PORT"),
        (socket.SOCK_DGRAM, "BEAST_LPO_UDP_PORT"),
        (socket.SOCK_DGRAM, "BEAST_LRS_UDP_PORT"),
    ],
)
def test_a_port_in_use(tmp_path: Path, kind: int, setting: str) -> None:
    ports = {
        "BEAST_LPO_PORT": str(free_port()),
        "BEAST_LRS_PORT": str(free_port()),
        "BEAST_LPO_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "BEAST_LRS_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
    }
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        ports[setting] = str(taken.getsockname()[1])
        result = run_beast(["serve"], {**ports, "BEAST_DATA_DIR": str(tmp_path)})
    assert_one_line(
        result, f"beast: {setting}: cannot listen", f"127.0.0.1:{ports[setting]}", f"set {setting} to a free port"
    )
    # The ports are checked before the first admin key is made: no key was shown and lost.
    assert "tbk_" not in result.stdout
    listed = run_beast(["keys", "list", "--json"], {"BEAST_DATA_DIR": str(tmp_path)})
    assert listed.returncode == 0 and "first admin" not in listed.stdout, listed.stdout


@pytest.mark.parametrize(
    "host,why", [("not-a-host", "cannot listen on 'not-a-host'"), ("192.0.2.1", "not an address of this machine")]
)
def test_a_bad_host_is_reported_as_beast_host(tmp_path: Path, host: str, why: str) -> None:
    result = run_beast(["serve"], {"BEAST_HOST": host, "BEAST_DATA_DIR": str(tmp_path / "data")})
    assert_one_line(result, "beast: BEAST_HOST:", why, "set BEAST_HOST to an address of this machine")
    assert "BEAST_LPO_PORT" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "data").exists(), "nothing created before the host was checked"


def test_beast_sync_with_redis_down(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "DATABASE_URL": f"sqlite:///{tmp_path}/beast.db"}
    result = run_beast(["sync"], env)
    assert_one_line(
        result, "beast: REDIS_URL: cannot reach Redis", "check that Redis is running and REDIS_URL points at it"
    )


def test_a_monthly_limit_past_what_the_database_holds_is_one_line(tmp_path: Path) -> None:
    result = run_beast(
        ["keys", "create", "--name", "x", "--tier", "subscriber", "--monthly-limit", "9" * 23],
        {"BEAST_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--monthly-limit: expected at most" in result.stderr
    assert run_beast(["keys", "list", "--json"], {"BEAST_DATA_DIR": str(tmp_path)}).stdout.strip() in ("", "[]")


def test_workers_are_bounded(tmp_path: Path) -> None:
    result = run_beast(["serve", "--workers", "100000"], {"BEAST_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and "--workers: expected a whole number from 1 to 64" in result.stderr, result.stderr


def test_beast_sim_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_beast(["sim", "--host", "127.0.0.1", "--port", str(port)], {"BEAST_DATA_DIR": str(tmp_path)})
    assert_one_line(result, "beast: --port: cannot listen", f"127.0.0.1:{port}")
    assert "exchange simulator on" not in result.stdout  # no success message before the failure
