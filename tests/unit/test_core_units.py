"""Pure pieces: settings, envelope, keys, quota, asset parsing, choosing a price."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import orjson
import pytest

from trinity_beast.domain.book import pick
from trinity_beast.domain.envelope import FIELDS, Envelopes, dumps, unix_ms, unix_seconds, utc_iso
from trinity_beast.domain.keys import KeyRequestError, hash_secret, new_key
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import EXCHANGES, load_settings
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import Quota, month_reset
from trinity_beast.exchanges import CONNECTORS, rest_url, ws_url
from trinity_beast.services.auth import KeyRing
from trinity_beast.services.prices.answer import parse_assets
from trinity_beast.services.prices.errors import BadRequest


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings({})
    assert (s.lpo_port, s.lrs_port, s.lpo_udp_port, s.lrs_udp_port) == (8080, 9090, 2679, 2680)
    assert s.redis_url is None and s.database_url is None
    assert str(s.data_dir) == "data" and s.region == "us-east-2" and s.cluster_node == "BeastMain"
    assert s.report_server is True and s.server == "uvicorn"
    assert {ex: ws_url(s, ex) for ex in EXCHANGES} == {ex: c.ws_url for ex, c in CONNECTORS.items()}
    assert {ex: rest_url(s, ex) for ex in EXCHANGES} == {ex: c.rest_url for ex, c in CONNECTORS.items()}
    assert ws_url(s, "okx") == "wss://ws.okx.com:8443/ws/v5/public"
    assert s.exchange_priority == EXCHANGES
    assert s.language == "en" and s.agent_account_id == "211998422884"
    assert dict(s.agent_profiles) == {
        "prices": "tbi",
        "ws": "partner-ws-hub",
        "reports": "tbi-reports",
        "partners": "tbi-partners",
    }


def test_every_exchange_url_can_be_overridden() -> None:
    env = {}
    for ex in EXCHANGES:
        env[f"BEAST_{ex.upper()}_WS_URL"] = f"ws://127.0.0.1:9700/{ex}"
        env[f"BEAST_{ex.upper()}_REST_URL"] = f"http://127.0.0.1:9700/{ex}"
    s = load_settings(env)
    assert all(ws_url(s, ex) == f"ws://127.0.0.1:9700/{ex}" for ex in EXCHANGES)
    assert all(rest_url(s, ex) == f"http://127.0.0.1:9700/{ex}" for ex in EXCHANGES)


def test_priority_puts_named_exchanges_first() -> None:
    assert load_settings({"BEAST_EXCHANGE_PRIORITY": "okx, Kraken"}).exchange_priority == (
        "okx",
        "kraken",
        "coinbase",
        "gemini",
        "gateio",
        "cryptocom",
    )


@pytest.mark.parametrize(
    "env,names",
    [
        ({"BEAST_LPO_PORT": "0"}, "BEAST_LPO_PORT"),
        ({"BEAST_LPO_PORT": "9090"}, "BEAST_LRS_PORT"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"BEAST_EXCHANGE_PRIORITY": "coinbase,binance"}, "BEAST_EXCHANGE_PRIORITY"),
        ({"BEAST_EXCHANGE_PRIORITY": "okx,okx"}, "BEAST_EXCHANGE_PRIORITY"),
        ({"BEAST_STALE_AFTER_S": "-1"}, "BEAST_STALE_AFTER_S"),
        ({"BEAST_STALE_AFTER_S": "nan"}, "BEAST_STALE_AFTER_S"),
        ({"BEAST_REGION": "us[1]"}, "BEAST_REGION"),
        ({"BEAST_REGION": "us:east"}, "BEAST_REGION"),  # a part of the agent profile ARN
        ({"BEAST_LANGUAGE": "english!"}, "BEAST_LANGUAGE"),
        ({"BEAST_LPO_PORT": "\u0661\u0668\u0660\u0668\u0660"}, "BEAST_LPO_PORT"),  # Arabic-Indic digits
        ({"BEAST_LPO_PORT": " 18080"}, "BEAST_LPO_PORT"),
        ({"BEAST_KEY_CACHE_S": "\u0665"}, "BEAST_KEY_CACHE_S"),
        ({"BEAST_KEY_CACHE_S": "1_0"}, "BEAST_KEY_CACHE_S"),
        ({"BEAST_AGENT_ACCOUNT_ID": "21199842288"}, "BEAST_AGENT_ACCOUNT_ID"),
        ({"BEAST_AGENT_ACCOUNT_ID": "acct"}, "BEAST_AGENT_ACCOUNT_ID"),
        ({"BEAST_AGENT_PROFILE_PRICES": "tbi/v2"}, "BEAST_AGENT_PROFILE_PRICES"),
        ({"BEAST_AGENT_PROFILE_WS": "a:b"}, "BEAST_AGENT_PROFILE_WS"),
        ({"BEAST_AGENT_PROFILE_REPORTS": "x" * 65}, "BEAST_AGENT_PROFILE_REPORTS"),
        ({"BEAST_AGENT_PROFILE_PARTNERS": "-lead"}, "BEAST_AGENT_PROFILE_PARTNERS"),
        ({"BEAST_AGENT_PROFILE_ARN": "arn:aws:iam::123456789012:role/x"}, "BEAST_AGENT_PROFILE_ARN"),  # retired
        ({"BEAST_LOG_LEVEL": "LOUD"}, "BEAST_LOG_LEVEL"),
        ({"BEAST_SERVER": "nginx"}, "BEAST_SERVER"),
        ({"BEAST_REDIS_NAMESPACE": "a b"}, "BEAST_REDIS_NAMESPACE"),
        ({"BEAST_KRAKEN_REST_URL": "ftp://x"}, "BEAST_KRAKEN_REST_URL"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert str(err.value).startswith(names + ":")
    assert "\n" not in str(err.value)


def test_envelope_has_twelve_fields_in_order() -> None:
    env = Envelopes.for_service(load_settings({"BEAST_IP_ADDRESS": "10.1.2.3"}), "LPO")
    ok = env.ok("/price", {"a": 1}, api_key_id="ak_1")
    assert tuple(ok) == FIELDS and len(FIELDS) == 12
    assert ok["status"] == "✅ [LPO] [us-east-2] [BeastMain] [/price] [200]"
    assert ok["ip_address"] == "10.1.2.3" and ok["language"] == "en"
    assert ok["agent_profile_arn"] == "arn:tbi:us-east-2:211998422884:agent-profile/tbi/v1"
    assert ok["error"] == "" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ok["timestamp"])
    bad = env.error("/price", 429, "too much")
    assert bad["status"] == "❌ [LPO] [us-east-2] [BeastMain] [/price] [429]" and bad["error"] == "too much"
    # orjson keeps insertion order: the wire order is the field order.
    assert list(orjson.loads(dumps(ok))) == list(FIELDS)


def test_utc_iso_is_the_seeds_seconds_and_z() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
    assert utc_iso(1_700_000_000.1234) == "2023-11-14T22:13:20Z"
    assert utc_iso(1_700_000_000.9999) == "2023-11-14T22:13:20Z"  # truncated, the same second as unix_seconds
    assert unix_seconds(1_700_000_000.9999) == 1_700_000_000 and unix_ms(1_700_000_000.1234) == 1_700_000_000_123
    assert isinstance(unix_seconds(1_700_000_000.5), int) and isinstance(unix_ms(1_700_000_000.5), int)


def test_agent_profile_arn_per_service_from_settings() -> None:
    default = load_settings({})
    arns = {tag: Envelopes.for_service(default, tag).agent_profile_arn for tag in ("LPO", "WS", "LRS", "FEEDS")}
    assert arns == {
        "LPO": "arn:tbi:us-east-2:211998422884:agent-profile/tbi/v1",
        "FEEDS": "arn:tbi:us-east-2:211998422884:agent-profile/tbi/v1",
        "WS": "arn:tbi:us-east-2:211998422884:agent-profile/partner-ws-hub/v1",
        "LRS": "arn:tbi:us-east-2:211998422884:agent-profile/tbi-reports/v1",
    }
    partners = Envelopes.for_service(default, "LRS", "partners")
    assert partners.agent_profile_arn == "arn:tbi:us-east-2:211998422884:agent-profile/tbi-partners/v1"
    assert partners.status_line("/partners", 200) == "✅ [LRS] [us-east-2] [BeastMain] [/partners] [200]"
    custom = load_settings(
        {
            "BEAST_REGION": "eu-west-1",
            "BEAST_AGENT_ACCOUNT_ID": "123456789012",
            "BEAST_AGENT_PROFILE_PRICES": "prices-eu",
            "BEAST_AGENT_PROFILE_WS": "hub_2",
            "BEAST_LANGUAGE": "en-GB",
        }
    )
    assert (
        Envelopes.for_service(custom, "LPO").agent_profile_arn
        == "arn:tbi:eu-west-1:123456789012:agent-profile/prices-eu/v1"
    )
    assert (
        Envelopes.for_service(custom, "WS").agent_profile_arn == "arn:tbi:eu-west-1:123456789012:agent-profile/hub_2/v1"
    )
    assert Envelopes.for_service(custom, "LRS").agent_profile_arn.endswith(":agent-profile/tbi-reports/v1")
    assert Envelopes.for_service(custom, "LPO").language == "en-GB"
    with pytest.raises(ValueError, match="unknown service tag 'LAMBDA'"):
        Envelopes.for_service(default, "LAMBDA")  # one rule: the tag of the server the route belongs to


def test_new_keys_store_only_a_hash() -> None:
    key, secret = new_key("a", "subscriber")
    assert key.id.startswith("ak_") and len(key.id) == 19
    assert secret.startswith("tbk_") and len(secret) > 40
    assert key.secret_hash == hash_secret(secret) and secret not in repr(key)
    assert key.monthly_limit == 100_000
    assert new_key("p", "partner", 50)[0].monthly_limit == 0  # partners are never limited
    with pytest.raises(KeyRequestError):
        new_key("a", "root")
    with pytest.raises(KeyRequestError):
        new_key("a", "subscriber", -1)
    assert "secret_hash" not in key.public()


def test_key_ring_caches_for_its_ttl_then_sees_revocation(tmp_path) -> None:
    from trinity_beast.stores.db.sqlite import SqliteDatabase

    db = SqliteDatabase(tmp_path / "k.db")
    db.migrate()
    key, secret = new_key("a", "subscriber")
    db.insert_key(key)
    now = [0.0]
    ring = KeyRing(db, ttl=5, clock=lambda: now[0])
    assert ring.lookup(secret).active
    db.revoke_key(key.id, 1.0)
    assert ring.lookup(secret).active  # still cached
    now[0] = 6.0
    assert not ring.lookup(secret).active
    assert ring.lookup("tbk_unknown_secret_value") is None
    assert ring.lookup("\x00bad") is None


def test_quota_warnings() -> None:
    reset = month_reset(time.time())
    assert Quota(79, 100, reset).warning == ""  # the seed's "" when there is nothing to warn about
    assert Quota(80, 100, reset).warning == "80% of the monthly limit of 100 prices used"
    assert Quota(95, 100, reset).warning == "90% of the monthly limit of 100 prices used"
    assert Quota(100, 100, reset).exhausted and Quota(100, 100, reset).remaining == 0
    assert Quota(10**9, 0, reset).warning == "" and not Quota(10**9, 0, reset).exhausted


def test_month_reset_is_the_first_of_next_month_utc() -> None:
    assert utc_iso(month_reset(1_700_000_000)) == "2023-12-01T00:00:00Z"
    assert utc_iso(month_reset(1_703_980_800 + 3600)) == "2024-01-01T00:00:00Z"  # Dec 31 2023 -> Jan 1
    assert utc_iso(month_reset(1_704_067_200)) == "2024-02-01T00:00:00Z"


def test_parse_assets() -> None:
    assert parse_assets(["btc, eth", "SOL,btc"]) == ("BTC", "ETH", "SOL")
    for bad in ([], [""], ["BTC;DROP"], ["x" * 16], [",".join(f"A{i}" for i in range(51))]):
        with pytest.raises(BadRequest):
            parse_assets(bad)


def _t(exchange: str, age: float, quote: str = "USD", rate: str | None = None) -> Tick:
    now = 1000.0
    return Tick(
        "BTC",
        quote,
        Decimal(1),
        None,
        None,
        exchange,
        now - age,
        now - age,
        usd_rate=None if rate is None else Decimal(rate),
    )


def test_pick_follows_priority_among_fresh_usd_prices() -> None:
    ticks = {"kraken": _t("kraken", 1), "coinbase": _t("coinbase", 2), "okx": _t("okx", 0, quote="USDT")}
    assert pick(ticks, ("okx", "coinbase", "kraken"), 1000.0, 30) == (ticks["coinbase"], True)
    ticks["okx"] = _t("okx", 0, quote="USDT", rate="1.0001")
    assert pick(ticks, ("okx", "coinbase", "kraken"), 1000.0, 30) == (ticks["okx"], True)
    stale = {"kraken": _t("kraken", 100), "coinbase": _t("coinbase", 200)}
    assert pick(stale, ("coinbase", "kraken"), 1000.0, 30) == (stale["kraken"], False)
    assert pick({}, ("coinbase",), 1000.0, 30) == (None, False)
