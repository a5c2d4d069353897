"""One contract, two backends: SQLite and the real PostgreSQL pass the same tests."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from trinity_beast.domain.keys import new_key
from trinity_beast.stores.db import Database
from trinity_beast.stores.db.base import migration_files


def test_migrate_applies_every_migration_once(database: Database) -> None:
    names = [name for _, name, _ in migration_files()]
    assert database.migrate() == names
    assert database.migrate() == []
    assert database.applied_migrations() == names


def test_keys_round_trip(database: Database) -> None:
    database.migrate()
    key, _secret = new_key("alice", "subscriber", 500, now=1000.0)
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
    from trinity_beast.stores.db.postgres import PostgresDatabase
    from trinity_beast.stores.db.sqlite import SqliteDatabase

    url = request.getfixturevalue("pg_url")
    for make in (lambda: PostgresDatabase(url), lambda: SqliteDatabase(tmp_path / "c.db")):
        dbs = [make() for _ in range(4)]
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def run(db: Database, results: list[list[str]] = results, errors: list[BaseException] = errors) -> None:
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


def _counts(**by_key: int) -> dict:
    from trinity_beast.domain.usage import Counts, Group

    return {Group(k, "/price", "BTC", "http", 200): Counts(n, n * 100, n * 10) for k, n in by_key.items()}


def test_a_usage_batch_is_written_once(database: Database) -> None:
    from trinity_beast.stores.db.base import UsageQuery

    database.migrate()
    assert database.write_usage_batch("usage:claim:1:a", 60, _counts(ak_a=3, ak_b=1), now=1.0) is True
    assert database.write_usage_batch("usage:claim:1:a", 60, _counts(ak_a=3, ak_b=1), now=2.0) is False
    # Another batch of the same minute (late increments) adds up.
    assert database.write_usage_batch("usage:claim:1:b", 60, _counts(ak_a=2), now=3.0) is True
    rows = database.usage_totals(UsageQuery(start=0, end=10_000))
    assert [(b, g.api_key_id, c.n, c.latency_us_sum, c.latency_us_max) for b, g, c in rows] == [
        (60, "ak_a", 5, 500, 30),
        (60, "ak_b", 1, 100, 10),
    ]
    assert database.batches_written(["usage:claim:1:a", "usage:claim:1:b", "usage:claim:1:z"]) == {
        "usage:claim:1:a",
        "usage:claim:1:b",
    }
    assert database.batches_written([]) == set()


def test_a_failed_batch_write_leaves_no_trace(database: Database) -> None:
    from trinity_beast.domain.usage import Counts, Group

    database.migrate()
    bad = {
        Group("ak_a", "/price", "BTC", "http", 200): Counts(1, 1, 1),
        Group(None, "/price", "BTC", "http", 200): Counts(1, 1, 1),
    }  # type: ignore[arg-type]
    with pytest.raises(Exception):
        database.write_usage_batch("usage:claim:9:x", 540, bad, now=1.0)
    assert database.batches_written(["usage:claim:9:x"]) == set()
    assert database.query("SELECT COUNT(*) FROM usage_buckets")[0][0] == 0


def test_usage_totals_filter_and_bucket(database: Database) -> None:
    from trinity_beast.domain.usage import Counts, Group
    from trinity_beast.stores.db.base import UsageQuery

    database.migrate()
    database.write_usage_batch("b1", 0, {Group("ak_a", "/price", "BTC,ETH", "udp", 200): Counts(2, 20, 15)}, 1.0)
    database.write_usage_batch("b2", 120, {Group("ak_a", "/price", "ETH", "http", 429): Counts(1, 5, 5)}, 1.0)
    database.write_usage_batch("b3", 3600, {Group("ak_b", "/price", "BTC", "http", 200): Counts(4, 40, 12)}, 1.0)
    hourly = database.usage_totals(UsageQuery(start=0, end=7200, step=3600))
    assert [(b, g.api_key_id, g.status, c.n) for b, g, c in hourly] == [
        (0, "ak_a", 200, 2),
        (0, "ak_a", 429, 1),
        (3600, "ak_b", 200, 4),
    ]
    assert [c.n for _, _, c in database.usage_totals(UsageQuery(start=0, end=7200, asset="ETH"))] == [2, 1]
    assert [c.n for _, _, c in database.usage_totals(UsageQuery(start=0, end=7200, asset="BTC"))] == [2, 4]
    assert [c.n for _, _, c in database.usage_totals(UsageQuery(start=0, end=7200, protocol="udp"))] == [2]
    assert [c.n for _, _, c in database.usage_totals(UsageQuery(start=0, end=7200, status=429))] == [1]
    assert [c.n for _, _, c in database.usage_totals(UsageQuery(start=0, end=7200, api_key_id="ak_b"))] == [4]
    assert database.usage_totals(UsageQuery(start=60, end=120)) == []
    assert database.first_usage_at() == 0
    # Calendar months, bucketed by the database's own date functions (2024: a leap year).
    jan, feb, mar = 1_704_067_200, 1_706_745_600, 1_709_251_200
    database.write_usage_batch(
        "m1", jan + 86_400 * 30, {Group("ak_m", "/price", "BTC", "http", 200): Counts(5, 1, 1)}, 1.0
    )
    database.write_usage_batch(
        "m2", feb + 86_400 * 28, {Group("ak_m", "/price", "BTC", "http", 200): Counts(6, 1, 1)}, 1.0
    )
    database.write_usage_batch("m3", mar, {Group("ak_m", "/price", "BTC", "http", 200): Counts(7, 1, 1)}, 1.0)
    months = database.usage_totals(UsageQuery(start=jan + 3600, end=mar + 60, edges=(jan, feb, mar), api_key_id="ak_m"))
    assert [(b, c.n) for b, _, c in months] == [(jan, 5), (feb, 6), (mar, 7)]


def test_roll_up_keeps_every_count(database: Database) -> None:
    from trinity_beast.domain.usage import Counts, Group
    from trinity_beast.stores.db.base import UsageQuery

    database.migrate()
    g = Group("ak_a", "/price", "BTC", "http", 200)
    for minute in range(0, 130):
        database.write_usage_batch(f"m{minute}", minute * 60, {g: Counts(1, 10, minute)}, float(minute))
    # Minutes before 01:30 fold into hours; only whole hours fold, so 01:xx stays in minutes.
    assert database.roll_up("minute", "hour", before=90 * 60) == 60
    assert database.roll_up("minute", "hour", before=90 * 60) == 0
    grains = dict(database.query("SELECT grain, COUNT(*) FROM usage_buckets GROUP BY grain"))
    assert grains == {"hour": 1, "minute": 70}
    [(_, _, total)] = database.usage_totals(UsageQuery(start=0, end=10**9, step=86400))
    assert (total.n, total.latency_us_sum, total.latency_us_max) == (130, 1300, 129)
    database.roll_up("minute", "hour", before=10**6)
    database.roll_up("hour", "day", before=10**6)
    assert dict(database.query("SELECT grain, COUNT(*) FROM usage_buckets GROUP BY grain")) == {"day": 1}
    [(_, _, total)] = database.usage_totals(UsageQuery(start=0, end=10**9, step=60))
    assert (total.n, total.latency_us_max) == (130, 129)
    assert database.prune_batches(before=100.0) == 100


def _partner(**changes):
    from dataclasses import replace

    from trinity_beast.domain.partners.model import new_partner

    body = {
        "name": "Acme",
        "aws_account_id": "111122223333",
        "region": "us-east-2",
        "connection_type": "peering",
        "vpc_id": "vpc-0a1b2c3d4e5f67890",
        "cidr": "172.31.0.0/16",
        "route_table_id": "rtb-0a1b2c3d4e5f67890",
    }
    partner = new_partner(body, "10.0.0.0/16", [], now=1000.0)
    key, _ = new_key("partner Acme", "partner", now=1000.0)
    return replace(partner, api_key_id=key.id, **changes), key


def test_partners_round_trip_with_key_and_audit(database: Database) -> None:
    from dataclasses import replace

    from trinity_beast.domain.partners.model import AuditEntry

    database.migrate()
    partner, key = _partner()
    database.create_partner(partner, key, AuditEntry.record(partner.id, "ak_admin", "create", 1000.0, n=1))
    assert database.partner_by_id(partner.id) == partner
    assert database.key_by_id(key.id) == key and key.tier == "partner"
    assert database.partner_by_id("pt_missing") is None
    pending = replace(partner, status="pending", connection_id="pcx-0a1b2c3d4e5f67890", updated_at=1001.0)
    assert database.update_partner(pending, "invited", AuditEntry.record(partner.id, "ak_admin", "register", 1001.0))
    # A stale writer (expecting the old status) changes nothing, not even the audit trail.
    assert not database.update_partner(
        replace(pending, status="rejected"), "invited", AuditEntry.record(partner.id, "x", "reject")
    )
    revoked = replace(pending, status="revoked", updated_at=1002.0)
    assert database.update_partner(
        revoked, "pending", AuditEntry.record(partner.id, "ak_admin", "revoke", 1002.0), revoke_key_at=1002.0
    )
    assert database.partner_by_id(partner.id) == revoked
    assert database.key_by_id(key.id).revoked_at == 1002.0
    assert [p.id for p in database.list_partners()] == [partner.id]
    assert database.list_partners("active") == []
    trail = database.audit_trail(partner.id)
    assert [(e.action, e.actor) for e in trail] == [
        ("create", "ak_admin"),
        ("register", "ak_admin"),
        ("revoke", "ak_admin"),
    ]
    assert trail[0].detail == {"n": 1}
    database.add_audit(AuditEntry.record(None, "ak_admin", "udp_allow", 1003.0, cidr="198.51.100.0/24"))
    assert [e.action for e in database.audit_trail(limit=2)] == ["revoke", "udp_allow"]
    assert [e.action for e in database.audit_trail(partner.id)] == ["create", "register", "revoke"]


def test_partner_creation_is_all_or_nothing(database: Database) -> None:
    from dataclasses import replace

    from trinity_beast.domain.partners.model import AuditEntry

    database.migrate()
    partner, key = _partner(connection_id="pcx-0a1b2c3d4e5f67890", status="pending")
    database.create_partner(partner, key, AuditEntry.record(partner.id, "a", "create"))
    twin, twin_key = _partner(connection_id="pcx-0a1b2c3d4e5f67890", status="pending")  # same connection id
    with pytest.raises(Exception):
        database.create_partner(twin, twin_key, AuditEntry.record(twin.id, "a", "create"))
    assert database.key_by_id(twin_key.id) is None and database.partner_by_id(twin.id) is None
    with pytest.raises(Exception):  # the schema refuses an unknown status
        database.create_partner(
            replace(twin, status="dreaming", connection_id=None), twin_key, AuditEntry.record(twin.id, "a", "c")
        )
    assert database.count_keys() == 1 and len(database.audit_trail()) == 1


def test_a_snapshot_reads_one_state(database: Database) -> None:
    database.migrate()
    with database.snapshot():
        assert database.batches_written(["x"]) == set()
    database.write_usage_batch("x", 0, _counts(ak_a=1), 1.0)
    assert database.batches_written(["x"]) == {"x"}
