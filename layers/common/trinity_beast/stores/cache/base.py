"""The hot store's contract: latest price per asset and exchange, pub/sub, counters.

Two backends implement it (memory for the embedded default, Redis for production) and
both pass tests/integration/test_cache_contract.py. Nothing outside cache/ knows which one it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable

from trinity_beast.domain.tick import Tick

PRICES_CHANNEL = "prices"


class CacheUnavailable(RuntimeError):
    """The cache could not be reached; callers fall back to what they hold in process."""


class Subscription(ABC):
    """Messages of one channel, in order; `aclose` ends it."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    @abstractmethod
    async def __anext__(self) -> bytes: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class Cache(ABC):
    @abstractmethod
    async def put_ticks(self, ticks: Iterable[Tick]) -> None:
        """Store each tick as the latest for its (asset, exchange) and publish it on PRICES_CHANNEL."""

    async def put_tick(self, tick: Tick) -> None:
        await self.put_ticks((tick,))

    @abstractmethod
    async def get_ticks(self, asset: str) -> dict[str, Tick]:
        """Latest tick per exchange for one asset (empty when none)."""

    @abstractmethod
    async def all_ticks(self) -> dict[str, dict[str, Tick]]:
        """Every stored tick: asset -> exchange -> tick (to seed an in-process copy)."""

    @abstractmethod
    async def publish(self, channel: str, message: bytes) -> None: ...

    @abstractmethod
    async def subscribe(self, channel: str) -> Subscription:
        """An active subscription: every message published on `channel` after this returns."""

    @abstractmethod
    async def hincr(
        self, increments: Iterable[tuple[str, str, int]], maxima: Iterable[tuple[str, str, int]] = ()
    ) -> list[int]:
        """Add each amount to hash field (key, field) and raise each `maxima` field to at least
        its value, all in one atomic step; return the incremented fields' new values in order.

        One step, so a caller that retries after CacheUnavailable never applies half a batch.
        """

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, int]: ...

    @abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Counter hash keys that start with `prefix`."""

    @abstractmethod
    async def claim(self, key: str, new_key: str) -> bool:
        """Atomically rename counter hash `key` to `new_key`; False when `key` is absent or
        `new_key` exists. Only one of many concurrent claimers of a key wins, and every win
        bumps `claims()`."""

    @abstractmethod
    async def hsetnx(self, key: str, field: str, value: int) -> int:
        """Set hash field (key, field) to `value` unless it exists; return what it holds after."""

    @abstractmethod
    async def claims(self) -> int:
        """How many claims ever succeeded: a reader that sees it unchanged across a read knows
        no counter hash moved under it."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove a counter hash; False when it was already gone."""

    @abstractmethod
    async def ping(self) -> bool: ...

    async def close(self) -> None:
        return None
