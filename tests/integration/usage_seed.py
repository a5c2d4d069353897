"""Many usage rows at once, written straight into usage_buckets: what years of traffic leave
behind, for the report-limit tests and bench/report_isolation.py."""

from __future__ import annotations

from collections.abc import Iterable

from trinity_beast.stores.db.base import Database

_COLUMNS = (
    "grain, bucket_start, api_key_id, endpoint, asset, protocol, status, requests, latency_us_sum, latency_us_max"
)
_PER_INSERT = 50


def seed_rows(db: Database, grain: str, starts: Iterable[int], key_ids: list[str], assets: list[str]) -> int:
    """One row per (bucket start, key, asset); returns how many were written."""
    rows = [(grain, s, k, "/price", a, "http", 200, 3, 3000, 1500) for s in starts for k in key_ids for a in assets]
    with db.transaction():
        for i in range(0, len(rows), _PER_INSERT):
            chunk = rows[i : i + _PER_INSERT]
            values, params = [], {}
            for j, row in enumerate(chunk):
                names = [f"c{j}_{n}" for n in range(len(row))]
                values.append("(" + ", ".join(f":{n}" for n in names) + ")")
                params.update(dict(zip(names, row, strict=True)))
            db._execute(
                f"INSERT INTO usage_buckets ({_COLUMNS}) VALUES {', '.join(values)} ON CONFLICT DO NOTHING", params
            )
    return len(rows)
