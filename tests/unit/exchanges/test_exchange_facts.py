"""Each exchange's facts live in its connector's module; settings only override its URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import EXCHANGES, Settings, load_settings
from trinity_beast.exchanges import CONNECTORS, UnknownInstrument, rest_url, ws_url

CONFIGURATION_DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_every_connector_declares_its_production_endpoints_and_pace(exchange: str) -> None:
    c = CONNECTORS[exchange]
    assert c.name == exchange
    assert c.ws_url.startswith("wss://") and c.rest_url.startswith("https://")
    assert c.rest_rate > 0  # prewarm's pacer waits 1 / rest_rate between calls


def test_configuration_doc_lists_each_connectors_production_urls() -> None:
    text = CONFIGURATION_DOC.read_text(encoding="utf-8")
    for ex, c in CONNECTORS.items():
        row = f"| `BEAST_{ex.upper()}_WS_URL` / `BEAST_{ex.upper()}_REST_URL` | `{c.ws_url}` / `{c.rest_url}` |"
        assert row in text, f"docs/configuration.md lacks {row}"


def test_settings_hold_only_the_overrides_and_the_rest_is_production() -> None:
    s = load_settings(
        {"BEAST_KRAKEN_WS_URL": " ws://127.0.0.1:9/kraken ", "BEAST_OKX_REST_URL": "http://127.0.0.1:9/okx"}
    )
    assert dict(s.ws_url_overrides) == {"kraken": "ws://127.0.0.1:9/kraken"}
    assert dict(s.rest_url_overrides) == {"okx": "http://127.0.0.1:9/okx"}
    assert ws_url(s, "kraken") == "ws://127.0.0.1:9/kraken" and rest_url(s, "kraken") == "https://api.kraken.com"
    assert ws_url(s, "okx") == "wss://ws.okx.com:8443/ws/v5/public" and rest_url(s, "okx") == "http://127.0.0.1:9/okx"
    unset = load_settings({})
    assert dict(unset.ws_url_overrides) == {} and dict(unset.rest_url_overrides) == {}


def test_a_bad_override_stops_start_up_and_an_unknown_exchange_is_named() -> None:
    with pytest.raises(ConfigError, match="BEAST_GEMINI_REST_URL"):
        load_settings({"BEAST_GEMINI_REST_URL": "ftp://example.com"})
    with pytest.raises(UnknownInstrument, match="binance: unknown exchange"):
        ws_url(Settings(), "binance")
    with pytest.raises(UnknownInstrument, match="binance: unknown exchange"):
        rest_url(Settings(), "binance")
