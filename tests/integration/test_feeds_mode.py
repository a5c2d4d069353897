"""Feeds once per stack: `beast serve --only feeds` runs the exchange feeds (here the
simulator) and writes prices into Redis; `beast serve --only lpo` with BEAST_FEEDS=0 and
BEAST_PREWARM=0 opens no exchange connection at all and serves those prices."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import run_beast, stack_env, start_beast_serve, stop_beast

EXCHANGES = ("COINBASE", "KRAKEN", "GEMINI", "GATEIO", "CRYPTOCOM", "OKX")


class CountingListener:
    """A TCP port every exchange URL points at: counts the connections anyone opens to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def urls(self) -> dict[str, str]:
        return {
            f"BEAST_{ex}_{kind}_URL": f"{scheme}://127.0.0.1:{self.port}/{ex.lower()}"
            for ex in EXCHANGES
            for kind, scheme in (("WS", "ws"), ("REST", "http"))
        }

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def exchanges_of_the_lpo() -> Iterator[CountingListener]:
    listener = CountingListener()
    yield listener
    listener.close()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_one_feed_process_feeds_lpo_processes_that_only_read(
    request: pytest.FixtureRequest, tmp_path: Path, exchanges_of_the_lpo: CountingListener
) -> None:
    env = stack_env(request, "production", tmp_path)
    feeds = start_beast_serve({**env, "BEAST_PREWARM": "0"}, cwd=tmp_path, args=("--only", "feeds", "--sim"))
    lpo = None
    try:
        assert "First start" not in feeds.first_output  # the serving processes make the admin key
        health = httpx.get(feeds.url + "/health").json()["data"]
        assert set(health["feeds"]) == {ex.lower() for ex in EXCHANGES}
        # Nothing else is served on the feed process: no prices, no usage, no UDP.
        assert httpx.get(feeds.url + "/price?asset=BTC").status_code == 404
        assert httpx.get(feeds.url + "/usage/me").status_code == 404
        ready = wait_for(
            lambda: (r := httpx.get(feeds.url + "/ready")).status_code == 200 and r, 60, "the feeds to be ready"
        )
        assert ready.json()["status"].startswith("✅ [FEEDS]")
        # Part of the price service: its agent profile, and the seed's "" for no error.
        assert ready.json()["agent_profile_arn"] == "arn:tbi:us-east-2:211998422884:agent-profile/tbi/v1"
        assert ready.json()["error"] == ""
        assert ready.json()["data"]["checks"]["feeds"]["fresh_feeds"]

        lpo_env = {**env, **exchanges_of_the_lpo.urls(), "BEAST_FEEDS": "0", "BEAST_PREWARM": "0"}
        lpo = start_beast_serve(lpo_env, cwd=tmp_path, args=("--only", "lpo"))
        secret = next(line.split()[1] for line in lpo.first_output.splitlines() if line.strip().startswith("key:"))
        assert httpx.get(lpo.url + "/health").json()["data"]["feeds"] is None

        def priced():
            r = httpx.get(lpo.url + "/price?asset=BTC", headers={"Authorization": f"Bearer {secret}"})
            return r.status_code == 200 and r.json()["data"]["assets"][0]

        btc = wait_for(priced, 60, "a BTC price from the feed process")
        assert btc["exchange"].endswith("-ws")  # from a feed (through Redis), not a REST call of its own
        assert wait_for(lambda: httpx.get(lpo.url + "/ready").status_code == 200, 60, "the LPO to be ready")
        # The feed process's prices kept arriving all along; the LPO never called an exchange.
        assert exchanges_of_the_lpo.accepted == 0
    finally:
        if lpo is not None:
            stop_beast(lpo)
        code, err = stop_beast(feeds)
    assert code == 0, err


def test_the_lpo_with_feeds_off_has_no_feeds_to_report(
    request: pytest.FixtureRequest, tmp_path: Path, exchanges_of_the_lpo: CountingListener
) -> None:
    """BEAST_FEEDS=0 alone: no feed connections; without BEAST_PREWARM=0 the prewarm would call
    exchange REST APIs (the positive control: same process, same ports)."""
    env = {**stack_env(request, "production", tmp_path), **exchanges_of_the_lpo.urls(), "BEAST_FEEDS": "0"}
    lpo = start_beast_serve(env, cwd=tmp_path, args=("--only", "lpo"))
    try:
        assert httpx.get(lpo.url + "/health").json()["data"]["feeds"] is None
        wait_for(lambda: exchanges_of_the_lpo.accepted > 0, 60, "the prewarm's REST calls")
    finally:
        stop_beast(lpo)


@pytest.mark.parametrize(
    "extra,error",
    [
        ({}, "beast: --only feeds: needs REDIS_URL (the prices it writes are for other processes to serve)"),
        (
            {"REDIS_URL": "redis://127.0.0.1:6379", "BEAST_FEEDS": "0"},
            "beast: --only feeds: BEAST_FEEDS is off, so this process would do nothing",
        ),
    ],
)
def test_feeds_mode_refuses_what_it_cannot_do(tmp_path: Path, extra: dict[str, str], error: str) -> None:
    env = {"BEAST_DATA_DIR": str(tmp_path / "data"), **extra}
    result = run_beast(["serve", "--only", "feeds"], env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == error, result.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything
