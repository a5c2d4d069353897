"""The feed manager refuses an exchange it has no connector for, before connecting anywhere."""

from __future__ import annotations

import pytest

from trinity_beast.domain.assets import AssetRegistry
from trinity_beast.domain.settings import Settings
from trinity_beast.exchanges.feeds import FeedManager


def test_unknown_exchange_is_refused(registry: AssetRegistry) -> None:
    with pytest.raises(ValueError, match="binance"):
        FeedManager(Settings(), registry, lambda t: None, exchanges=["binance"])
