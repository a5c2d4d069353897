"""Prewarm's pacer spaces REST calls at an exchange's rate (the prewarm run itself is in
tests/integration/test_prewarm.py)."""

from __future__ import annotations

import asyncio
import time

from trinity_beast.services.prices.prewarm import Pacer


async def test_pacer_spaces_calls() -> None:
    pacer = Pacer(20)
    started = time.monotonic()
    await asyncio.gather(*(pacer.wait() for _ in range(6)))
    assert time.monotonic() - started >= 5 / 20 - 0.01
