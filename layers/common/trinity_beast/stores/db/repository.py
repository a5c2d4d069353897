"""What every repository mixin (keys, partners, audit, usage, migrations) calls on its database.

The mixins hold one concern's SQL each; `Database` in base.py composes them and implements
these calls (`_execute` through the backend). Declaring them here lets each mixin stand on
its own, type-checked, without importing base.py (which imports the mixins).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any


class Repository(ABC):
    dialect: str = ""  # "sqlite" or "postgres": the few statements that differ pick by it

    @abstractmethod
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement; return (rows, affected row count)."""

    @abstractmethod
    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _lock_migrations(self) -> None:
        """Hold the cross-process migration lock until the transaction ends."""
