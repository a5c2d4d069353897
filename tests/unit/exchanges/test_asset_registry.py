"""The packaged asset registry: shape, realistic symbols, validation of bad files."""

from __future__ import annotations

import copy
import json

import pytest

from trinity_beast.domain.assets import DATA_FILE, AssetRegistry, RegistryError, load_registry, parse_registry
from trinity_beast.domain.settings import EXCHANGES


def test_registry_has_150_unique_assets(registry: AssetRegistry) -> None:
    assert len(registry) == 150 and len(set(registry.assets)) == 150
    assert registry.assets[:2] == ["BTC", "ETH"]
    assert load_registry() is load_registry()  # cached


def test_every_exchange_lists_a_plausible_share(registry: AssetRegistry) -> None:
    for ex in EXCHANGES:
        assert len(registry.instruments_for(ex)) >= 40, ex
    for code in registry.assets:
        assert registry.exchanges_for(code), code


def test_bitcoin_symbols(registry: AssetRegistry) -> None:
    got = {ex: (i.symbol, i.quote, i.rest_symbol) for ex in EXCHANGES if (i := registry.instrument("BTC", ex))}
    assert got == {
        "coinbase": ("BTC-USD", "USD", "BTC-USD"),
        "kraken": ("BTC/USD", "USD", "XBTUSD"),
        "gemini": ("BTCUSD", "USD", "btcusd"),
        "gateio": ("BTC_USDT", "USDT", "BTC_USDT"),
        "cryptocom": ("BTC_USD", "USD", "BTC_USD"),
        "okx": ("BTC-USDT", "USDT", "BTC-USDT"),
    }


def test_kraken_rest_names_use_xbt_and_xdg(registry: AssetRegistry) -> None:
    assert registry.instrument("DOGE", "kraken").rest_symbol == "XDGUSD"
    assert registry.instrument("DOGE", "kraken").symbol == "DOGE/USD"
    assert registry.instrument("ETH", "kraken").rest_symbol == "ETHUSD"


def test_stablecoins_are_fed_from_real_markets(registry: AssetRegistry) -> None:
    usdt = {ex: (i.symbol, i.quote) for ex in EXCHANGES if (i := registry.instrument("USDT", ex))}
    assert usdt["coinbase"] == ("USDT-USD", "USD") and usdt["kraken"] == ("USDT/USD", "USD")
    assert "okx" not in usdt and "gateio" not in usdt  # no USDT/USD spot there
    assert all(q == "USD" for _s, q in usdt.values())
    usdc = {ex: (i.symbol, i.quote) for ex in EXCHANGES if (i := registry.instrument("USDC", ex))}
    assert usdc["kraken"] == ("USDC/USD", "USD") and usdc["okx"] == ("USDC-USDT", "USDT")
    assert "coinbase" not in usdc  # Coinbase merged USDC books into USD


def test_symbol_conventions_and_quotes(registry: AssetRegistry) -> None:
    seps = {"coinbase": "-", "kraken": "/", "gateio": "_", "cryptocom": "_", "okx": "-"}
    for ex in EXCHANGES:
        for i in registry.instruments_for(ex):
            assert i.quote in ("USD", "USDT", "USDC")
            if ex in seps:
                assert i.symbol == f"{i.asset}{seps[ex]}{i.quote}", i
            else:
                assert i.symbol == f"{i.asset}{i.quote}" and i.rest_symbol == i.symbol.lower()


def test_resolve_and_lookups(registry: AssetRegistry) -> None:
    assert registry.resolve("okx", "BTC-USDT") == ("BTC", "USDT")
    assert registry.resolve("kraken", "DOGE/USD") == ("DOGE", "USD")
    assert registry.resolve("kraken", "XBT/USD") is None
    assert registry.resolve("nope", "BTC-USD") is None
    assert registry.get("SOL").name == "Solana"
    assert registry.get("NOPE") is None and registry.instrument("NOPE", "okx") is None
    assert registry.instrument("OKB", "coinbase") is None
    assert registry.exchanges_for("GT") == ["gateio"]
    assert registry.exchanges_for("NOPE") == []


def test_listing_is_json_ready(registry: AssetRegistry) -> None:
    listing = registry.listing()
    json.dumps(listing)
    assert listing["count"] == 150 and listing["version"] == 1
    btc = listing["assets"][0]
    assert btc["asset"] == "BTC" and btc["name"] == "Bitcoin" and btc["exchanges"] == list(EXCHANGES)
    assert btc["instruments"]["okx"] == {"symbol": "BTC-USDT", "quote": "USDT"}


@pytest.fixture
def doc() -> dict:
    return json.loads(DATA_FILE.read_text())


def _bad(doc: dict, mutate) -> str:
    bad = copy.deepcopy(doc)
    mutate(bad)
    with pytest.raises(RegistryError) as err:
        parse_registry(bad)
    return str(err.value)


def test_validation_rejects_bad_files(doc: dict) -> None:
    assert "150" in _bad(doc, lambda d: d["assets"].pop())
    assert "duplicate" in _bad(doc, lambda d: d["assets"].__setitem__(1, copy.deepcopy(d["assets"][0])))
    assert "unknown exchange" in _bad(
        doc, lambda d: d["assets"][0]["instruments"].__setitem__("binance", {"symbol": "BTCUSDT", "quote": "USDT"})
    )
    assert "version" in _bad(doc, lambda d: d.__setitem__("version", 2))
    assert "quote" in _bad(doc, lambda d: d["assets"][0]["instruments"]["okx"].__setitem__("quote", "EUR"))
    assert "name" in _bad(doc, lambda d: d["assets"][0].__setitem__("name", " "))
    assert "code" in _bad(doc, lambda d: d["assets"][0].__setitem__("asset", "btc"))
    assert "used twice" in _bad(doc, lambda d: d["assets"][1]["instruments"]["okx"].__setitem__("symbol", "BTC-USDT"))
    assert "at least one" in _bad(doc, lambda d: d["assets"][0].__setitem__("instruments", {}))
    with pytest.raises(RegistryError):
        parse_registry([])
