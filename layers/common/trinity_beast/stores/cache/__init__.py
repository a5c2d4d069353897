"""The hot store: pick the backend from settings."""

from __future__ import annotations

from trinity_beast.domain.settings import Settings
from trinity_beast.stores.cache.base import PRICES_CHANNEL, Cache, CacheUnavailable, Subscription
from trinity_beast.stores.cache.memory import MemoryCache

__all__ = ["PRICES_CHANNEL", "Cache", "CacheUnavailable", "MemoryCache", "Subscription", "make_cache"]


def make_cache(settings: Settings) -> Cache:
    """Redis when REDIS_URL is set, otherwise the in-process memory cache."""
    if settings.redis_url:
        from trinity_beast.stores.cache.redis import RedisCache

        return RedisCache(
            settings.redis_url, namespace=settings.redis_namespace, password=settings.redis_password or None
        )
    return MemoryCache()
