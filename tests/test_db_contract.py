"""One contract, two backends: SQLite and the real PostgreSQL pass the same tests."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from trinity_beast.db import Database
from trinity_beast.db.base import migration_files
from trinity_beast.keys import new_key


def test_migrate_applies_every_migration_once(database: Database) -> None:
    names = [name for _, name, _ in migration_files()]
    assert database.migrate() == names
    assert database.migrate() == []
    assert database.applied_migrations() == names


def test_keys_round_trip(database: Database) -> None:
    database.migrate()
    key, secret = new_key("alice", "subscriber", 500, now=1000.0)
    database.insert_key(key)
    assert database.key_by_hash(key.secret_hash) == key
    assert database.key_by_id(key.id) == key
    assert database.key_by_id("ak_missing") is None
    assert database.key_by_hash("0" * 64) is None
    assert database.count_keys() == 1


def test_list_keys_in_creation_order(database: Database) -> None:
    database.migrate()
    made = [new_key(f"k{i}", "partner", now=1000.0 + i)[0] for i in range(3)]
    for key in reversed(made):
        database.insert_key(key)
    assert [k.id for k in database.list_keys()] == [k.id for k in made]


def test_revoke_only_once_and_only_existing(database: Database) -> None:
    database.migrate()
    key, _ = new_key("bob", "admin")
    database.insert_key(key)
    assert database.revoke_key(key.id, 2000.0) is True
    assert database.revoke_key(key.id, 3000.0) is False
    assert database.revoke_key("ak_nope", 3000.0) is False
    assert database.key_by_id(key.id).revoked_at == 2000.0


def test_duplicate_key_is_refused_and_changes_nothing(database: Database) -> None:
    database.migrate()
    key, _ = new_key("carol", "subscriber")
    database.insert_key(key)
    with pytest.raises(Exception):
        database.insert_key(key)
    assert database.count_keys() == 1


def test_bad_tier_is_refused_by_the_schema(database: Database) -> None:
    from dataclasses import replace

    database.migrate()
    key, _ = new_key("dave", "subscriber")
    with pytest.raises(Exception):
        database.insert_key(replace(key, tier="emperor"))
    assert database.count_keys() == 0


def test_failed_transaction_rolls_back(database: Database) -> None:
    database.migrate()
    key, _ = new_key("erin", "subscriber")
    with pytest.raises(RuntimeError):
        with database.transaction():
            database._execute(
                "INSERT INTO api_keys (id, name, tier, monthly_limit, secret_hash, created_at) "
                "VALUES (:id, 'x', 'admin', 0, :h, 1)",
                {"id": key.id, "h": key.secret_hash},
            )
            raise RuntimeError("boom")
    assert database.count_keys() == 0


def test_no_secret_is_stored(database: Database) -> None:
    database.migrate()
    key, secret = new_key("frank", "partner")
    database.insert_key(key)
    rows = database.query("SELECT id, name, tier, monthly_limit, secret_hash, created_at, revoked_at FROM api_keys")
    assert secret not in repr(rows)
    assert key.secret_hash in repr(rows)


def test_concurrent_migrators_apply_each_migration_once(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Many processes start at once against one database: migrations still apply exactly once."""
    from trinity_beast.db.postgres import PostgresDatabase
    from trinity_beast.db.sqlite import SqliteDatabase

    url = request.getfixturevalue("pg_url")
    for make in (lambda: PostgresDatabase(url), lambda: SqliteDatabase(tmp_path / "c.db")):
        dbs = [make() for _ in range(4)]
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def run(db: Database) -> None:
            try:
                results.append(db.migrate())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(len(r) for r in results) == [0, 0, 0, len(migration_files())]
        for db in dbs:
            db.close()
