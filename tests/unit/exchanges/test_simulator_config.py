"""The simulator's settings before it serves: its URLs mirror the exchanges' base paths, and its
control methods refuse what no exchange could do. Nothing is started."""

from __future__ import annotations

import pytest

from beast_sim import Simulator, sim_urls


def test_sim_urls_mirror_the_real_base_paths() -> None:
    ws, rest = sim_urls("127.0.0.1", 9999)
    assert ws["okx"] == "ws://127.0.0.1:9999/okx"
    assert rest == {
        "coinbase": "http://127.0.0.1:9999/coinbase/api/v3/brokerage",
        "kraken": "http://127.0.0.1:9999/kraken",
        "gemini": "http://127.0.0.1:9999/gemini",
        "gateio": "http://127.0.0.1:9999/gateio/api/v4",
        "cryptocom": "http://127.0.0.1:9999/cryptocom/exchange/v1",
        "okx": "http://127.0.0.1:9999/okx",
    }


def test_control_methods_validate() -> None:
    sim = Simulator()
    with pytest.raises(ValueError):
        sim.set_mode("okx", "chaos")
    with pytest.raises(ValueError):
        sim.reject("binance", "BTCUSDT")
    with pytest.raises(ValueError):
        sim.set_price("NOPE", "1")
    with pytest.raises(ValueError):
        sim.set_price("BTC", "NaN")
    sim.set_price("BTC", "1.5")
    assert sim.prices.quote("BTC", "USD", "okx")[0] == "1.5"
    sim.set_price("BTC", None)
    assert sim.prices.quote("BTC", "USD", "okx")[0] != "1.5"
