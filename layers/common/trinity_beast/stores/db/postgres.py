"""PostgreSQL backend (Aurora in production) through pg8000's native interface."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from trinity_beast.domain.errors import DatabaseUnavailable, StatementTimeout
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.stores.db.base import Database
from trinity_beast.stores.db.pgtls import TlsOptions, explain, ssl_context, tls_options

_MIGRATION_LOCK_ID = 0x7B3A57  # pg_advisory_xact_lock key shared by every migrator


# SQLSTATEs the server sends when it cannot serve right now (a restart, a failover, too many
# clients, out of resources): whole classes by their first two characters, single codes in full.
UNAVAILABLE_CLASSES = ("08", "53", "58")  # connection exception, insufficient resources, system error
UNAVAILABLE_CODES = frozenset(
    {
        "57P01",  # admin_shutdown: pg_ctl stop -m fast, a failover
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "57P04",  # database_dropped
        "57P05",  # idle_session_timeout
        "25006",  # read_only_sql_transaction: writing to a replica promoted away from us mid-failover
        "40P01",  # deadlock_detected: retried by the caller like an outage
    }
)
QUERY_CANCELED = "57014"  # statement_timeout fired


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a pg8000 DatabaseError ('' when it carries none)."""
    info = exc.args[0] if exc.args else None
    return str(info.get("C", "")) if isinstance(info, dict) else ""


def unavailable(exc: BaseException) -> bool:
    """True when a server-side error means "the database cannot serve now", not "bad SQL"."""
    code = sqlstate(exc)
    return code in UNAVAILABLE_CODES or code[:2] in UNAVAILABLE_CLASSES


def connect_args(url: str) -> dict[str, Any]:
    """pg8000 connect arguments from a postgresql:// URL (TLS per its sslmode/sslrootcert, pgtls)."""
    parts = urlsplit(url)
    args: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or "postgres",
        "timeout": 10,
    }
    if parts.password:
        args["password"] = unquote(parts.password)
    # False, not None: pg8000's None means "try TLS unverified, fall back to plain" (libpq's prefer).
    args["ssl_context"] = ssl_context(tls_options(url)) or False
    return args


def _one_line(exc: BaseException) -> str:
    """pg8000 puts the server's error fields in a dict: keep its message (M) and code (C)."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else None
    if fields and "M" in fields:
        return f"{fields['M']} ({fields.get('C', '?')})"
    return " ".join(str(exc).split())


class PostgresDatabase(Database):
    """One connection, reopened after the server went away (a restart, a failover, a cut).

    A statement that fails because the connection broke raises DatabaseUnavailable. Outside
    a transaction a read is retried once on a fresh connection (the old one may simply have
    been cut while idle); inside one the whole transaction fails, and the caller's retry
    starts it again on a new connection.
    """

    dialect = "postgres"

    def __init__(self, url: str | Callable[[], str]) -> None:
        """`url`, or a function giving the URL each time a connection is opened (credentials
        that rotate: the Lambda functions' Secrets Manager secret)."""
        super().__init__()
        self._url = url
        if isinstance(url, str):
            self._args, self._tls = connect_args(url), tls_options(url)  # a bad URL fails here, as ConfigError
        self._conn: pg8000.native.Connection | None = None
        self._in_tx = False
        self._connect()

    def _target(self) -> tuple[dict[str, Any], TlsOptions]:
        if isinstance(self._url, str):
            return self._args, self._tls
        try:
            url = self._url()
            return connect_args(url), tls_options(url)
        except ConfigError as exc:  # e.g. the secret could not be read just now: retry later
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from None

    def _connect(self) -> pg8000.native.Connection:
        if self._conn is None:
            args, tls = self._target()
            try:
                self._conn = pg8000.native.Connection(**args)
            except ssl.SSLError as exc:
                raise DatabaseUnavailable(explain(exc, tls, args["host"], args["port"])) from None
            except (InterfaceError, OSError, DatabaseError) as exc:  # DatabaseError: refused login, no such database
                raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_one_line(exc)}") from None
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._in_tx = False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing to close cleanly
                pass

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[Any], int]:
        retry = not self._in_tx and self._conn is not None
        while True:
            conn = self._connect()
            try:
                rows = conn.run(sql, **(params or {}))
                return rows or [], conn.row_count
            except (InterfaceError, OSError) as exc:
                self._drop()
                if not retry:
                    raise DatabaseUnavailable(f"PostgreSQL connection lost: {exc}") from None
                retry = False
            except DatabaseError as exc:
                if sqlstate(exc) == QUERY_CANCELED:
                    raise StatementTimeout(_one_line(exc)) from None
                if not unavailable(exc):
                    raise
                # The server is shutting down, restarting or out of resources: this connection
                # is done for; a read outside a transaction gets one more try on a new one.
                self._drop()
                if not retry:
                    raise DatabaseUnavailable(f"PostgreSQL cannot serve: {_one_line(exc)}") from None
                retry = False

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
        rows, count = self._run(sql, params)
        return [tuple(r) for r in rows], count

    def _begin(self) -> None:
        self._run("START TRANSACTION")
        self._in_tx = True

    def _commit(self) -> None:
        try:
            self._run("COMMIT")
        finally:
            self._in_tx = False

    def _rollback(self) -> None:
        self._in_tx = False
        if self._conn is None:
            return  # the connection broke: the server rolled the transaction back
        try:
            self._conn.run("ROLLBACK")
        except (InterfaceError, OSError, DatabaseError):
            self._drop()

    def _begin_snapshot(self) -> None:
        self._run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self._in_tx = True

    def _lock_migrations(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(:id)", {"id": _MIGRATION_LOCK_ID})

    def close(self) -> None:
        self._drop()

    def reopen(self) -> PostgresDatabase:
        return PostgresDatabase(self._url)

    def _set_deadline(self, timeout_s: float) -> None:
        # SET does not take parameters; an integer of milliseconds is safe to inline.
        self._run(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
