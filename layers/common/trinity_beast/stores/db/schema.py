"""Schema migrations: the .sql files in migrations/, applied in order, once each, concurrently safe.

The backend supplies `_lock_migrations` (an advisory lock on PostgreSQL; SQLite's
BEGIN IMMEDIATE already serializes); repository.py declares it.
"""

from __future__ import annotations

from importlib import resources

from trinity_beast.stores.db.repository import Repository


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


class SchemaMigrations(Repository):
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
