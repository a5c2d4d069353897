"""Fixtures for the integration tests: real Redis and PostgreSQL, servers on loopback.

They use the machine's Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432,
database `test`). Without them a test is skipped on a developer machine, but fails under
CI (CI=true), where a missing service is a broken run, not a pass.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support import PG_ADMIN_URL, REDIS_URL, InProcessServer, in_process_server, reachable, require_service, stack_env

from trinity_beast.stores.cache import Cache, MemoryCache
from trinity_beast.stores.db import Database
from trinity_beast.stores.db.postgres import PostgresDatabase
from trinity_beast.stores.db.sqlite import SqliteDatabase


@pytest.fixture
def redis_url() -> str:
    require_service("Redis at 127.0.0.1:6379", reachable("127.0.0.1", 6379))
    return REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A namespace no other test uses; its keys are deleted afterwards."""
    import redis

    namespace = "t" + uuid.uuid4().hex[:12]
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL at 127.0.0.1:5432", reachable("127.0.0.1", 5432))
    import pg8000.native

    from trinity_beast.stores.db.postgres import connect_args

    name = "beast_t_" + uuid.uuid4().hex[:12]
    admin = pg8000.native.Connection(**connect_args(PG_ADMIN_URL))
    admin.run(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()",
            n=name,
        )
        admin.run(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture(params=["memory", "redis"])
async def cache_backend(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    from trinity_beast.stores.cache.redis import RedisCache

    cache = RedisCache(request.getfixturevalue("redis_url"), namespace=request.getfixturevalue("redis_namespace"))
    yield cache
    await cache.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db: Database = SqliteDatabase(tmp_path / "beast.db")
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_url"))
    yield db
    db.close()


@pytest.fixture(params=["embedded", "production"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(stack_env(request, request.param, tmp_path)) as srv:
        yield srv
