"""Issue 13, probe 5: `aggregate=median` never fails, whatever the sources say.

When every fresh source is further than 2 % from the raw median (two sources 100 and 110),
each was rejected as an outlier and the answer was a 500. The answer is now defined
(domain/book.py `Median`): the plain median of all fresh sources, `consensus: false`,
nothing rejected, and the spread in `dispersion`. A property test runs random source sets
and ages through `median` and the HTTP entry built from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import InProcessServer, in_process_server, stack_env

from trinity_beast.domain.book import OUTLIER_FRACTION, median
from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.domain.tick import Tick
from trinity_beast.services.prices.shape import median_entry

NOW = 1_800_000_000.0
STALE_AFTER_S = 30.0
ENTRY_FIELDS = {
    "asset",
    "price",
    "exchange",
    "cached",
    "cache_age_seconds",
    "timestamp",
    "readable_timestamp",
    "latency_ms",
    "timestamp_ms",
    "latency_us",
    "sources",
    "consensus",
    "dispersion",
    "rejected",
}

prices = st.decimals(
    min_value=Decimal("1e-8"), max_value=Decimal("1e12"), allow_nan=False, allow_infinity=False, places=8
)
sources = st.dictionaries(
    st.sampled_from(EXCHANGES),
    st.tuples(prices, st.floats(min_value=0, max_value=120), st.sampled_from(["USD", "USD", "USDT"])),
    max_size=len(EXCHANGES),
)


def ticks_of(spec: dict[str, tuple[Decimal, float, str]]) -> dict[str, Tick]:
    out = {}
    for exchange, (price, age_s, quote) in spec.items():
        tick = Tick("BTC", quote, price, None, None, exchange, NOW - age_s, NOW - age_s)
        out[exchange] = tick.to_usd(Decimal("0.9998")) if quote != "USD" else tick
    return out


@settings(max_examples=400, deadline=None)
@given(sources)
def test_the_median_never_raises_and_has_one_of_two_shapes(spec: dict[str, tuple[Decimal, float, str]]) -> None:
    ticks = ticks_of(spec)
    fresh = [t for t in ticks.values() if NOW - t.received_ts <= STALE_AFTER_S]
    m = median(ticks, NOW, STALE_AFTER_S)
    if not fresh:
        assert m is None
        return
    assert m is not None
    assert {s.tick.exchange for s in m.sources} == {t.exchange for t in fresh}
    assert m.used, "a median always rests on at least one source"
    assert min(t.price for t in m.used) <= m.price <= max(t.price for t in m.used)
    assert m.dispersion >= 0
    if m.consensus:
        raw = sorted(t.price for t in fresh)
        center = (raw[(len(raw) - 1) // 2] + raw[len(raw) // 2]) / 2
        for s in m.sources:
            assert s.rejected == (abs(s.tick.price - center) > center * OUTLIER_FRACTION)
    else:
        assert not m.rejected and len(m.used) == len(fresh) >= 2
    entry = median_entry("BTC", m, NOW, 0.001)
    assert set(entry) - {"converted_from"} == ENTRY_FIELDS  # converted_from: when the newest source was USDT
    assert entry["exchange"] == "median" and entry["consensus"] is m.consensus
    assert entry["rejected"] == [t.label for t in m.rejected]
    assert entry["price"] > 0 and entry["dispersion"] >= 0


def test_two_sources_ten_percent_apart_have_a_defined_median() -> None:
    m = median(ticks_of({"coinbase": (Decimal(100), 1, "USD"), "kraken": (Decimal(110), 1, "USD")}), NOW, STALE_AFTER_S)
    assert m is not None and not m.consensus and m.price == Decimal(105) and not m.rejected
    assert m.dispersion == Decimal(10) / Decimal(105)


@pytest.fixture(params=["embedded", "production"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    env = stack_env(request, request.param, tmp_path) | {"BEAST_FEEDS": "false", "BEAST_PREWARM": "false"}
    with in_process_server(env) as server:
        yield server


def test_an_even_split_answers_200_over_http(srv: InProcessServer) -> None:
    """The probe: fresh sources at 100 and 110 made `aggregate=median` a 500."""
    now = time.time()
    for exchange, price in (("coinbase", "100"), ("kraken", "110")):
        srv.call(srv.rt.cache.put_tick(Tick("DOGE", "USD", Decimal(price), None, None, exchange, now, now)))
    deadline = time.time() + 10
    with srv.client() as c:
        while True:
            r = c.get("/price?asset=DOGE&aggregate=median", headers={"Authorization": f"Bearer {srv.admin_key}"})
            assert r.status_code in (200, 404), r.text
            entry = r.json()["data"]["assets"][0] if r.status_code == 200 else {}
            if len(entry.get("sources", [])) == 2 or time.time() > deadline:
                break
    assert r.status_code == 200 and entry["exchange"] == "median"
    assert entry["price"] == 105.0 and entry["consensus"] is False and entry["rejected"] == []
    assert abs(entry["dispersion"] - 10 / 105) < 1e-6
