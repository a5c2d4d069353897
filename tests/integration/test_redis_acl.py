"""A Redis/MemoryDB ACL user: the user in REDIS_URL, the password apart from it (REDIS_PASSWORD,
or REDIS_SECRET_ARN's `password` on Lambda), against a private redis-server with ACLs on."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal

import boto3
import pytest
import redis
from moto import mock_aws
from support import free_port

from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.tick import Tick
from trinity_beast.stores.cache import CacheUnavailable, make_cache
from trinity_beast.stores.environment import load_settings

PASSWORD = "s3cret-for-the-acl-user"


@pytest.fixture
def acl_redis(tmp_path) -> Iterator[int]:
    """A redis-server of our own where only the user `beast` (with PASSWORD) may do anything."""
    server = shutil.which("redis-server")
    assert server, "redis-server is installed with the machine's Redis"
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--user",
            "default",
            "off",
            "--user",
            "beast",
            "on",
            f">{PASSWORD}",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            redis.Redis(port=port, username="beast", password=PASSWORD).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the private redis-server did not come up"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def _tick() -> Tick:
    now = time.time()
    return Tick("BTC", "USD", Decimal("64000.5"), None, None, "coinbase", now, now)


async def test_the_acl_user_connects_with_the_password_apart_from_the_url(acl_redis: int) -> None:
    url = f"redis://beast@127.0.0.1:{acl_redis}/0"
    settings = load_settings({"REDIS_URL": url, "REDIS_PASSWORD": PASSWORD})
    assert PASSWORD not in repr(settings)  # settings are logged at start-up; the password is not
    cache = make_cache(settings)
    try:
        await cache.put_tick(_tick())
        assert (await cache.get_ticks("BTC"))["coinbase"].price == Decimal("64000.5")
    finally:
        await cache.close()


async def test_without_the_password_the_cache_is_unavailable_not_a_crash(acl_redis: int) -> None:
    cache = make_cache(load_settings({"REDIS_URL": f"redis://beast@127.0.0.1:{acl_redis}/0"}))
    try:
        with pytest.raises(CacheUnavailable):
            await cache.put_tick(_tick())
    finally:
        await cache.close()


def test_lambda_reads_the_password_from_the_secret(acl_redis: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-2")
        arn = sm.create_secret(Name="cache", SecretString=json.dumps({"username": "beast", "password": PASSWORD}))[
            "ARN"
        ]
        bad = sm.create_secret(Name="cache-without", SecretString=json.dumps({"username": "beast"}))["ARN"]
        env = {"REDIS_URL": f"redis://beast@127.0.0.1:{acl_redis}/0", "REDIS_SECRET_ARN": arn}
        assert load_settings(env).redis_password == PASSWORD
        # An explicit REDIS_PASSWORD wins (ECS injects it; no Secrets Manager call).
        assert load_settings({**env, "REDIS_PASSWORD": "other"}).redis_password == "other"
        with pytest.raises(ConfigError, match=r"^REDIS_SECRET_ARN: the secret has no password"):
            load_settings({**env, "REDIS_SECRET_ARN": bad})
