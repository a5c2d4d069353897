"""The hot store: pick the backend from settings."""

from __future__ import annotations

from ..config import Settings
from .base import PRICES_CHANNEL, Cache, CacheUnavailable, Subscription
from .memory import MemoryCache

__all__ = ["Cache", "CacheUnavailable", "MemoryCache", "PRICES_CHANNEL", "Subscription", "make_cache"]


def make_cache(settings: Settings) -> Cache:
    """Redis when REDIS_URL is set, otherwise the in-process memory cache."""
    if settings.redis_url:
        from .redis import RedisCache

        return RedisCache(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryCache()
