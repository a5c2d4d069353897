"""The `beast` command as a user runs it: serve, keys, migrate, bad settings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from support import put_btc, run_beast, stack_env, start_beast_serve, stop_beast


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_serve_first_start_prints_an_admin_key_that_works(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str
) -> None:
    env = stack_env(request, stack, tmp_path)
    p = start_beast_serve(env, cwd=tmp_path)
    try:
        assert "First start: created an admin key" in p.first_output
        assert f"Command Center: http://127.0.0.1:{p.env['BEAST_LRS_PORT']}/admin" in p.first_output
        secret = next(line.split()[1] for line in p.first_output.splitlines() if line.strip().startswith("key:"))
        r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 404
        [failed] = r.json()["data"]["failed"]
        assert failed["asset"] == "BTC" and failed["reason"].startswith("no live price: coinbase: request failed")
        health = httpx.get(p.url + "/health").json()["data"]
        assert health["cache"] == ("redis" if stack == "production" else "memory")
        assert health["database"] == ("postgres" if stack == "production" else "sqlite")

        if stack == "production":
            # A price written into Redis by anyone is served by the running server.
            put_btc(env)
            deadline = time.time() + 5
            while time.time() < deadline:
                r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"})
                if r.status_code == 200:
                    break
                time.sleep(0.05)
            assert r.status_code == 200
            assert r.json()["data"]["assets"][0]["price"] == 65000.5
            assert r.json()["data"]["assets"][0]["exchange"] == "kraken-ws"
    finally:
        code, err = stop_beast(p)
    assert code == 0, err
    assert "flushing usage" in err

    # A second start finds the key and creates none.
    p = start_beast_serve(env, cwd=tmp_path)
    try:
        assert "First start" not in p.first_output
    finally:
        stop_beast(p)


@pytest.mark.parametrize(
    "setting,value,expected",
    [
        (
            "BEAST_LPO_PORT",
            "eighty",
            "beast: invalid setting BEAST_LPO_PORT: expected a port number 1-65535, got 'eighty'",
        ),
        (
            "BEAST_LRS_UDP_PORT",
            "70000",
            "beast: invalid setting BEAST_LRS_UDP_PORT: expected a port number 1-65535, got '70000'",
        ),
        (
            "REDIS_URL",
            "localhost:6379",
            "beast: invalid setting REDIS_URL: expected a URL starting with redis:// or rediss:// or unix://, got 'localhost:6379'",
        ),
        (
            "BEAST_OKX_WS_URL",
            "https://x",
            "beast: invalid setting BEAST_OKX_WS_URL: expected a URL starting with ws:// or wss://, got 'https://x'",
        ),
        ("APP_REPORT_SERVER", "maybe", "beast: invalid setting APP_REPORT_SERVER: expected true or false, got 'maybe'"),
        ("BEAST_SERVER", "nginx", "beast: invalid setting BEAST_SERVER: expected uvicorn or granian, got 'nginx'"),
    ],
)
def test_an_invalid_setting_stops_start_up_with_one_line(
    tmp_path: Path, setting: str, value: str, expected: str
) -> None:
    result = run_beast(["serve"], {setting: value, "BEAST_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "beast.db").exists()


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_beast(["serve"], {"BEAST_LPO_PORT": str(port), "BEAST_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"beast: BEAST_LPO_PORT: cannot listen on 127.0.0.1:{port}")
    )


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_keys_create_list_revoke(request: pytest.FixtureRequest, tmp_path: Path, stack: str) -> None:
    env = stack_env(request, stack, tmp_path)
    created = run_beast(
        ["keys", "create", "--name", "acme", "--tier", "subscriber", "--monthly-limit", "500", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["id"].startswith("ak_") and key["key"].startswith("tbk_")
    assert key["tier"] == "subscriber" and key["monthly_limit"] == 500

    listed = run_beast(["keys", "list", "--json"], env)
    assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
    assert key["key"] not in listed.stdout

    table = run_beast(["keys", "list"], env).stdout
    assert key["id"] in table and "acme" in table and key["key"] not in table

    assert run_beast(["keys", "revoke", key["id"]], env).returncode == 0
    again = run_beast(["keys", "revoke", key["id"]], env)
    assert again.returncode == 1 and "no active key" in again.stderr
    assert json.loads(run_beast(["keys", "list", "--json"], env).stdout)[0]["revoked_at"] is not None

    # The revoked key is refused by a running server.
    p = start_beast_serve(env, cwd=tmp_path)
    try:
        r = httpx.get(p.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 401 and r.json()["error"] == "invalid API key"
    finally:
        stop_beast(p)


def test_keys_create_text_output_and_bad_input(tmp_path: Path) -> None:
    env = {"BEAST_DATA_DIR": str(tmp_path)}
    out = run_beast(["keys", "create", "--name", "p", "--tier", "partner"], env)
    assert out.returncode == 0
    assert "monthly limit: unlimited" in out.stdout and "shown once" in out.stdout
    bad = run_beast(["keys", "create", "--name", "x", "--tier", "emperor"], env)
    assert bad.returncode == 2 and "invalid choice: 'emperor'" in bad.stderr
    bad = run_beast(["keys", "create", "--name", "x", "--tier", "subscriber", "--monthly-limit", "-5"], env)
    assert bad.returncode == 2 and "expected 0 (unlimited) or more" in bad.stderr
    bad = run_beast(["keys", "create", "--name", "  ", "--tier", "subscriber"], env)
    assert bad.returncode == 2 and "name: expected 1-100 printable characters" in bad.stderr
    assert len(json.loads(run_beast(["keys", "list", "--json"], env).stdout)) == 1


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_migrate(request: pytest.FixtureRequest, tmp_path: Path, stack: str) -> None:
    env = stack_env(request, stack, tmp_path)
    first = run_beast(["migrate"], env)
    assert first.returncode == 0 and "+ 001_keys.sql" in first.stdout
    second = run_beast(["migrate"], env)
    assert second.returncode == 0 and "applied 0 new migration(s)" in second.stdout


def test_every_command_has_help() -> None:
    """`beast --help` and every subcommand's `--help` describe every option (README: "Every command has `--help`")."""
    import argparse

    from trinity_beast.app.cli import build_parser

    def commands(parser: argparse.ArgumentParser, path: list[str]):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, [*path, name])

    seen = []
    for path, parser in commands(build_parser(), []):
        seen.append(" ".join(path))
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help and action.help.strip(), (
                f"beast {' '.join(path)}: {action.option_strings or action.dest} has no help"
            )
        result = run_beast([*path, "--help"], {})
        assert result.returncode == 0 and "usage: beast" in result.stdout, path
    assert {"", "serve", "sim", "sync", "migrate", "keys", "keys create", "keys list", "keys revoke"} <= set(seen)
