"""Keys, partners and usage history: pick the backend from settings."""

from __future__ import annotations

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.settings import Settings
from trinity_beast.stores.db.base import Database

__all__ = ["Database", "DatabaseUnavailable", "make_database"]


def make_database(settings: Settings) -> Database:
    """PostgreSQL for postgresql:// URLs, SQLite otherwise.

    SQLite URLs follow the usual convention: `sqlite:///relative.db`, `sqlite:////abs/path.db`;
    with no DATABASE_URL the file is BEAST_DATA_DIR/beast.db.
    """
    url = settings.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        from trinity_beast.stores.db.postgres import PostgresDatabase

        return PostgresDatabase(url)
    from trinity_beast.stores.db.sqlite import SqliteDatabase

    if url:
        return SqliteDatabase(url.removeprefix("sqlite://").removeprefix("/"))
    return SqliteDatabase(settings.sqlite_path)
