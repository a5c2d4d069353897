"""Usage history rows: synced minute buckets with their batch ledger, totals, roll-ups, pruning.

`UsageQuery` says which rows to add up and into which buckets; `UsageRows` holds the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trinity_beast.domain.usage import BILLABLE_ENDPOINTS, Counts, Group
from trinity_beast.stores.db.repository import Repository

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

    `step` buckets by a fixed length (60, 3600, 86400); `edges`, when set, are the starts of
    the calendar months [start, end) overlaps, and rows are bucketed by UTC calendar month
    (the SQL computes each row's month itself; the edges place the cache's rows in Python).
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

    def bucket_sql(self, dialect: str) -> str:
        """SQL for a row's bucket start, computed per row in constant time: a fixed step by
        arithmetic, a calendar month by the database's own date functions (a CASE over every
        month edge made a long range quadratic). Integers only (validated here) are inlined."""
        if not self.edges:
            step = int(self.step)
            return f"(bucket_start - (bucket_start % {step}))"
        if dialect == "postgres":
            return (
                "CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC')) AS BIGINT)"
            )
        return "CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER)"

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


class UsageRows(Repository):
    def write_usage_batch(self, batch_id: str, minute_start: int, counts: dict[Group, Counts], now: float) -> bool:
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
                values: list[str] = []
                params: dict[str, Any] = {"start": int(minute_start)}
                for j, (g, c) in enumerate(chunk):
                    values.append(f"('minute', :start, :k{j}, :e{j}, :a{j}, :p{j}, :s{j}, :n{j}, :u{j}, :m{j})")
                    params.update(
                        {
                            f"k{j}": g.api_key_id,
                            f"e{j}": g.endpoint,
                            f"a{j}": g.asset,
                            f"p{j}": g.protocol,
                            f"s{j}": g.status,
                            f"n{j}": c.n,
                            f"u{j}": c.latency_us_sum,
                            f"m{j}": c.latency_us_max,
                        }
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
            f"FROM (SELECT {q.bucket_sql(self.dialect)} AS b, {_GROUP_COLUMNS}, requests, latency_us_sum, latency_us_max "
            f"FROM usage_buckets WHERE {where}) AS t GROUP BY b, {_GROUP_COLUMNS}",
            **params,
        )
        out = [
            (int(r[0]), Group(r[1], r[2], r[3], r[4], int(r[5])), Counts(int(r[6]), int(r[7]), int(r[8]))) for r in rows
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
