"""The database contract and its one SQL implementation.

Both backends (SQLite for the embedded default, PostgreSQL via pg8000 for production) run
the same SQL with `:name` parameters, which sqlite3 and pg8000.native both accept; a
backend only supplies how to execute a statement and how to hold a transaction. Both pass
tests/test_db_contract.py.

Calls block: async code runs them with asyncio.to_thread. A lock makes one connection
safe to share between threads.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from importlib import resources
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..keys import ApiKey
from ..partners.model import AuditEntry, Partner
from ..usage import BILLABLE_ENDPOINTS, Counts, Group

_KEY_COLUMNS = "id, name, tier, monthly_limit, secret_hash, created_at, revoked_at"
_PARTNER_COLUMNS = (
    "id, name, aws_account_id, region, connection_type, vpc_id, cidr, subnet_ids, security_group_ids, "
    "route_table_id, connection_id, status, api_key_id, created_at, updated_at"
)
_AUDIT_COLUMNS = "id, partner_id, at, actor, action, detail"
_GROUP_COLUMNS = "api_key_id, endpoint, asset, protocol, status"
_USAGE_COLUMNS = f"grain, bucket_start, {_GROUP_COLUMNS}, requests, latency_us_sum, latency_us_max"
_USAGE_KEY = f"grain, bucket_start, {_GROUP_COLUMNS}"
# Adding into an existing row (a late bucket, a roll-up); CASE because SQLite has no GREATEST.
_USAGE_UPSERT = (
    f"ON CONFLICT ({_USAGE_KEY}) DO UPDATE SET "
    "requests = usage_buckets.requests + excluded.requests, "
    "latency_us_sum = usage_buckets.latency_us_sum + excluded.latency_us_sum, "
    "latency_us_max = CASE WHEN excluded.latency_us_max > usage_buckets.latency_us_max "
    "THEN excluded.latency_us_max ELSE usage_buckets.latency_us_max END"
)
GRAIN_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
_ROWS_PER_INSERT = 50  # 9 parameters a row stays well under SQLite's variable limit


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which usage rows to add up, and into which buckets (all times epoch seconds, UTC).

    `step` buckets by a fixed length (60, 3600, 86400); `edges` (ascending bucket starts)
    by calendar periods such as months, when set.
    """

    start: int
    end: int  # exclusive
    step: int = 60
    edges: tuple[int, ...] = ()
    api_key_id: str | None = None
    endpoint: str | None = None
    asset: str | None = None
    protocol: str | None = None
    status: int | None = None

    def bucket_sql(self) -> str:
        """SQL for a row's bucket start; integers only (validated here), so inlining is safe."""
        if not self.edges:
            step = int(self.step)
            return f"(bucket_start - (bucket_start % {step}))"
        edges = [int(e) for e in self.edges]
        if len(edges) == 1:
            return str(edges[0])
        whens = " ".join(f"WHEN bucket_start < {nxt} THEN {cur}" for cur, nxt in zip(edges, edges[1:]))
        return f"(CASE {whens} ELSE {edges[-1]} END)"

    def where_sql(self) -> tuple[str, dict[str, Any]]:
        clauses = ["bucket_start >= :start", "bucket_start < :end"]
        params: dict[str, Any] = {"start": int(self.start), "end": int(self.end)}
        for column in ("api_key_id", "endpoint", "protocol", "status"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if self.asset is not None:
            # A request for several assets is one row "BTC,ETH"; it matches each of them.
            clauses.append("(',' || asset || ',') LIKE :asset")
            params["asset"] = f"%,{self.asset},%"
        return " AND ".join(clauses), params


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped in db/migrations, in order."""
    out = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (our own files: no `;` inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _partner(row: Sequence[Any]) -> Partner:
    return Partner(
        id=row[0], name=row[1], aws_account_id=row[2], region=row[3], connection_type=row[4], vpc_id=row[5],
        cidr=row[6], subnet_ids=tuple(row[7].split()), security_group_ids=tuple(row[8].split()),
        route_table_id=row[9], connection_id=row[10], status=row[11], api_key_id=row[12],
        created_at=float(row[13]), updated_at=float(row[14]),
    )


def _partner_params(p: Partner) -> dict[str, Any]:
    return {
        "id": p.id, "name": p.name, "aws_account_id": p.aws_account_id, "region": p.region,
        "connection_type": p.connection_type, "vpc_id": p.vpc_id, "cidr": p.cidr,
        "subnet_ids": " ".join(p.subnet_ids), "security_group_ids": " ".join(p.security_group_ids),
        "route_table_id": p.route_table_id, "connection_id": p.connection_id, "status": p.status,
        "api_key_id": p.api_key_id, "created_at": p.created_at, "updated_at": p.updated_at,
    }


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        tier=row[2],
        monthly_limit=int(row[3]),
        secret_hash=row[4],
        created_at=float(row[5]),
        revoked_at=None if row[6] is None else float(row[6]),
    )


class Database(ABC):
    dialect: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- what a backend supplies -------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple], int]:
        """Run one statement; return (rows, affected row count)."""

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _begin_snapshot(self) -> None:
        """Start a read-only transaction whose reads all see one consistent state."""

    @abstractmethod
    def _lock_migrations(self) -> None:
        """Serialize concurrent migrators (inside the migration transaction)."""

    @abstractmethod
    def close(self) -> None: ...

    # --- shared machinery --------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._begin()
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._commit()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads that must agree with each other (usage rows and the batch ledger)."""
        with self._lock:
            self._begin_snapshot()
            try:
                yield
            finally:
                self._rollback()

    def query(self, sql: str, **params: Any) -> list[tuple]:
        with self._lock:
            return self._execute(sql, params)[0]

    def execute(self, sql: str, **params: Any) -> int:
        with self._lock:
            return self._execute(sql, params)[1]

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied; return their names. Safe to run concurrently."""
        applied_now: list[str] = []
        with self.transaction():
            self._lock_migrations()
            self._execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {int(r[0]) for r in self._execute("SELECT version FROM schema_migrations")[0]}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                for statement in split_statements(sql):
                    self._execute(statement)
                self._execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (:v, :n)", {"v": version, "n": name}
                )
                applied_now.append(name)
        return applied_now

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM schema_migrations ORDER BY version")]

    # --- keys --------------------------------------------------------------------------
    def insert_key(self, key: ApiKey) -> None:
        with self.transaction():
            self._execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (:id, :name, :tier, :limit, :hash, :created, :revoked)",
                {
                    "id": key.id,
                    "name": key.name,
                    "tier": key.tier,
                    "limit": key.monthly_limit,
                    "hash": key.secret_hash,
                    "created": key.created_at,
                    "revoked": key.revoked_at,
                },
            )

    def key_by_hash(self, secret_hash: str) -> ApiKey | None:
        rows = self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE secret_hash = :h", h=secret_hash)
        return _key(rows[0]) if rows else None

    def key_by_id(self, key_id: str) -> ApiKey | None:
        rows = self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = :id", id=key_id)
        return _key(rows[0]) if rows else None

    def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self.query(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def count_keys(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM api_keys")[0][0])

    def insert_first_key(self, key: ApiKey, before: Callable[[], None] | None = None) -> bool:
        """Insert `key` only while there are no keys at all; False if there are.

        Serialized across processes by the migration lock, so tasks starting together make one
        first key between them. `before` runs inside the lock, just before the insert (storing
        the secret elsewhere); if it raises, nothing is inserted.
        """
        with self.transaction():
            self._lock_migrations()
            if int(self._execute("SELECT COUNT(*) FROM api_keys")[0][0][0]):
                return False
            if before is not None:
                before()
            self._execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (:id, :name, :tier, :limit, :hash, :created, :revoked)",
                {"id": key.id, "name": key.name, "tier": key.tier, "limit": key.monthly_limit,
                 "hash": key.secret_hash, "created": key.created_at, "revoked": key.revoked_at},
            )
        return True

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Revoke an active key; False when there is no such active key."""
        with self.transaction():
            _, count = self._execute(
                "UPDATE api_keys SET revoked_at = :when WHERE id = :id AND revoked_at IS NULL",
                {"when": when, "id": key_id},
            )
        return count == 1

    # --- partners ----------------------------------------------------------------------
    def _insert_audit(self, entry: AuditEntry) -> None:
        import orjson

        self._execute(
            f"INSERT INTO partner_audit ({_AUDIT_COLUMNS}) VALUES (:id, :p, :at, :actor, :action, :detail)",
            {"id": entry.id, "p": entry.partner_id, "at": entry.at, "actor": entry.actor, "action": entry.action,
             "detail": orjson.dumps(entry.detail).decode()},
        )

    def create_partner(self, partner: Partner, key: ApiKey, audit: AuditEntry) -> None:
        """The partner, its key and the audit entry together, or none of them."""
        names = ", ".join(f":{c.strip()}" for c in _PARTNER_COLUMNS.split(","))
        with self.transaction():
            self._execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (:id, :name, :tier, :limit, :hash, :created, NULL)",
                {"id": key.id, "name": key.name, "tier": key.tier, "limit": key.monthly_limit,
                 "hash": key.secret_hash, "created": key.created_at},
            )
            self._execute(f"INSERT INTO partners ({_PARTNER_COLUMNS}) VALUES ({names})", _partner_params(partner))
            self._insert_audit(audit)

    def update_partner(
        self, partner: Partner, expected_status: str, audit: AuditEntry, revoke_key_at: float | None = None
    ) -> bool:
        """Save `partner` if it is still `expected_status` (else False, nothing written), with its
        audit entry and, when `revoke_key_at` is set, its key revoked, in one transaction."""
        sets = ", ".join(f"{c.strip()} = :{c.strip()}" for c in _PARTNER_COLUMNS.split(",")[1:])
        with self.transaction():
            _, count = self._execute(
                f"UPDATE partners SET {sets} WHERE id = :id AND status = :expected",
                {**_partner_params(partner), "expected": expected_status},
            )
            if count != 1:
                return False
            if revoke_key_at is not None and partner.api_key_id:
                self._execute(
                    "UPDATE api_keys SET revoked_at = :when WHERE id = :id AND revoked_at IS NULL",
                    {"when": revoke_key_at, "id": partner.api_key_id},
                )
            self._insert_audit(audit)
        return True

    def partner_by_id(self, partner_id: str) -> Partner | None:
        rows = self.query(f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE id = :id", id=partner_id)
        return _partner(rows[0]) if rows else None

    def list_partners(self, status: str | None = None) -> list[Partner]:
        params = {} if status is None else {"status": status}
        where = "WHERE status = :status" if params else ""
        rows = self.query(f"SELECT {_PARTNER_COLUMNS} FROM partners {where} ORDER BY created_at, id", **params)
        return [_partner(r) for r in rows]

    def add_audit(self, entry: AuditEntry) -> None:
        with self.transaction():
            self._insert_audit(entry)

    def audit_trail(self, partner_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """The newest `limit` entries (of one partner, or of all), oldest first."""
        import orjson

        params: dict[str, Any] = {"n": int(limit)} if partner_id is None else {"n": int(limit), "p": partner_id}
        where = "WHERE partner_id = :p" if partner_id is not None else ""
        rows = self.query(f"SELECT {_AUDIT_COLUMNS} FROM partner_audit {where} ORDER BY id DESC LIMIT :n", **params)
        return [AuditEntry(r[0], r[1], float(r[2]), r[3], r[4], orjson.loads(r[5])) for r in reversed(rows)]

    # --- usage -------------------------------------------------------------------------
    def write_usage_batch(
        self, batch_id: str, minute_start: int, counts: dict[Group, Counts], now: float
    ) -> bool:
        """Add one cache bucket's counts as minute rows, with its ledger row, in one transaction.

        False (and nothing written) when the batch is already in the ledger: a rerun or a
        second sync can never add the same bucket twice.
        """
        with self.transaction():
            _, inserted = self._execute(
                "INSERT INTO usage_batches (batch_id, synced_at) VALUES (:b, :t) ON CONFLICT (batch_id) DO NOTHING",
                {"b": batch_id, "t": now},
            )
            if inserted != 1:
                return False
            items = sorted(counts.items())
            for i in range(0, len(items), _ROWS_PER_INSERT):
                chunk = items[i : i + _ROWS_PER_INSERT]
                values, params = [], {"start": int(minute_start)}
                for j, (g, c) in enumerate(chunk):
                    values.append(f"('minute', :start, :k{j}, :e{j}, :a{j}, :p{j}, :s{j}, :n{j}, :u{j}, :m{j})")
                    params.update(
                        {f"k{j}": g.api_key_id, f"e{j}": g.endpoint, f"a{j}": g.asset, f"p{j}": g.protocol,
                         f"s{j}": g.status, f"n{j}": c.n, f"u{j}": c.latency_us_sum, f"m{j}": c.latency_us_max}
                    )
                self._execute(
                    f"INSERT INTO usage_buckets ({_USAGE_COLUMNS}) VALUES {', '.join(values)} {_USAGE_UPSERT}", params
                )
        return True

    def batches_written(self, batch_ids: Iterable[str]) -> set[str]:
        """Which of these batches the ledger holds."""
        ids = list(batch_ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            names = ", ".join(f":b{j}" for j in range(len(chunk)))
            rows = self._execute(
                f"SELECT batch_id FROM usage_batches WHERE batch_id IN ({names})",
                {f"b{j}": b for j, b in enumerate(chunk)},
            )[0]
            found.update(r[0] for r in rows)
        return found

    def usage_totals(self, q: UsageQuery) -> list[tuple[int, Group, Counts]]:
        """Rows matching `q`, added up per bucket and group, ordered by bucket then group."""
        where, params = q.where_sql()
        rows = self.query(
            f"SELECT b, {_GROUP_COLUMNS}, SUM(requests), SUM(latency_us_sum), MAX(latency_us_max) "
            f"FROM (SELECT {q.bucket_sql()} AS b, {_GROUP_COLUMNS}, requests, latency_us_sum, latency_us_max "
            f"FROM usage_buckets WHERE {where}) AS t GROUP BY b, {_GROUP_COLUMNS}",
            **params,
        )
        out = [
            (int(r[0]), Group(r[1], r[2], r[3], r[4], int(r[5])), Counts(int(r[6]), int(r[7]), int(r[8])))
            for r in rows
        ]
        out.sort(key=lambda row: (row[0], row[1]))
        return out

    def roll_up(self, grain: str, into: str, before: int) -> int:
        """Fold `grain` rows that start before `before` into `into` rows; return rows folded."""
        step = GRAIN_SECONDS[into]
        before = int(before) - int(before) % step  # never split a target bucket
        if grain not in GRAIN_SECONDS:
            raise ValueError(f"unknown grain {grain!r}")
        with self.transaction():
            self._execute(
                f"INSERT INTO usage_buckets ({_USAGE_COLUMNS}) "
                f"SELECT '{into}', bucket_start - (bucket_start % {step}), {_GROUP_COLUMNS}, "
                "SUM(requests), SUM(latency_us_sum), MAX(latency_us_max) FROM usage_buckets "
                f"WHERE grain = '{grain}' AND bucket_start < :before "
                f"GROUP BY bucket_start - (bucket_start % {step}), {_GROUP_COLUMNS} {_USAGE_UPSERT}",
                {"before": before},
            )
            _, folded = self._execute(
                "DELETE FROM usage_buckets WHERE grain = :g AND bucket_start < :before", {"g": grain, "before": before}
            )
        return folded

    def prune_batches(self, before: float) -> int:
        """Forget ledger rows older than `before` (their cache buckets are long gone)."""
        with self.transaction():
            return self._execute("DELETE FROM usage_batches WHERE synced_at < :t", {"t": before})[1]

    def billable_requests(self, key_id: str, since: int, until: int) -> int:
        """Requests that count towards a key's limit, synced for buckets in [since, until)."""
        rows = self.query(
            "SELECT COALESCE(SUM(requests), 0) FROM usage_buckets WHERE api_key_id = :k AND status = 200 "
            "AND endpoint IN (:e1, :e2) AND bucket_start >= :since AND bucket_start < :until",
            k=key_id,
            e1=BILLABLE_ENDPOINTS[0],
            e2=BILLABLE_ENDPOINTS[1],
            since=since,
            until=until,
        )
        return int(rows[0][0])

    def first_usage_at(self) -> int | None:
        rows = self.query("SELECT MIN(bucket_start) FROM usage_buckets")
        return None if not rows or rows[0][0] is None else int(rows[0][0])
