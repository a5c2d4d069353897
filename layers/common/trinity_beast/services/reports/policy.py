"""What bounds a report: its range and bucket caps, its query time, its own database handle,
and the deployment's cursor key.

One report must never slow another tenant's prices. So a report request is refused up front
when it would span more periods than allowed (ReportError, 400, naming the limit); its SQL
runs under a statement timeout; and it reads through a database object of its own (its own
connection and lock) on a thread of its own, so key lookups, usage seeding and the sync job
never wait behind it, neither for the connection nor for a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from trinity_beast.domain.settings import REPORT_MAX_DAYS, Settings

if TYPE_CHECKING:
    from trinity_beast.stores.db.base import Database

T = TypeVar("T")
CURSOR_SECRET_NAME = "report_cursor_key"
REPORT_THREADS = 1  # one report connection, one thread: more reports wait their turn, prices never do


@dataclass(frozen=True, slots=True)
class ReportLimits:
    max_buckets: int = 20_000
    max_days: Mapping[str, int] = field(default_factory=lambda: dict(REPORT_MAX_DAYS))
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportLimits:
        return cls(settings.report_max_buckets, dict(settings.report_max_days), settings.report_timeout_s)


def cursor_key(settings: Settings, db: Database) -> bytes:
    """The MAC key of report cursors: BEAST_CURSOR_KEY when set (on AWS, from the stack's
    secret), else a random key the deployment made on its first start and keeps in its
    database, shared by all its processes. Never a constant in the code."""
    secret = settings.cursor_key or db.deployment_secret(CURSOR_SECRET_NAME)
    return hashlib.sha256(b"trinity-beast report cursor\x00" + secret.encode()).digest()


class ReportReader:
    """The database handle reports read through, with its own thread pool.

    `run` executes a blocking read there; `timeout_s` is the statement timeout the reads
    apply (PostgreSQL `statement_timeout`, SQLite's progress handler)."""

    def __init__(self, main: Database, limits: ReportLimits, key: bytes) -> None:
        self._main = main
        self._db: Database | None = None  # opened on the first report: a price-only process never opens it
        self._opening = threading.Lock()
        self.limits = limits
        self.cursor_key = key
        self._pool = ThreadPoolExecutor(REPORT_THREADS, thread_name_prefix="reports")

    @property
    def db(self) -> Database:
        """The reports' own database object (`Database.reopen` of the main one)."""
        with self._opening:
            if self._db is None:
                self._db = self._main.reopen()
            return self._db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._db is not None and self._db is not self._main:
            self._db.close()
