"""One settings object, read once from the environment.

Every setting is documented in docs/configuration.md. A bad value stops start-up with one
line that names the setting (ConfigError), never a traceback deep inside a server.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trinity_beast.domain.setting_values import (
    ConfigError,
    aws_id,
    boolean,
    bounded,
    choice,
    limit,
    networks,
    port_number,
    positive_number,
    secret,
    secret_id,
    url,
)

# The exchanges we read, in default priority order. Everything else about one exchange
# (production URLs, REST rate, parsing) lives in trinity_beast/exchanges/<name>.py; settings
# hold only the BEAST_<EX>_WS_URL / _REST_URL overrides (tests and `beast serve --sim` point
# them at the simulator), resolved where they are used by exchanges.ws_url / rest_url.
EXCHANGES: tuple[str, ...] = ("coinbase", "kraken", "gemini", "gateio", "cryptocom", "okx")

# The seed system's agent profiles, one per kind of answer (docs/configuration.md): the
# envelope's `agent_profile_arn` is arn:tbi:{region}:{account}:agent-profile/{profile}/v1.
# BEAST_AGENT_PROFILE_<KIND> overrides one; the LPO's price routes use `prices`, the
# WebSocket feed `ws`, the LRS `reports`, its partner routes `partners`.
AGENT_PROFILES: dict[str, str] = {
    "prices": "tbi",
    "ws": "partner-ws-hub",
    "reports": "tbi-reports",
    "partners": "tbi-partners",
}
AGENT_ACCOUNT_ID = "211998422884"  # the seed's published account


# What serves the LPO's HTTP and WebSockets (BEAST_SERVER); the first is the default.
SERVERS: tuple[str, ...] = ("uvicorn", "granian")

# The longest report range per granularity, in days (BEAST_REPORT_MAX_DAYS_<GRANULARITY>).
REPORT_MAX_DAYS: dict[str, int] = {"minute": 7, "hour": 400, "day": 3660, "month": 36525}


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    # MemoryDB/Redis ACL password for the user in REDIS_URL (REDIS_PASSWORD, or read from
    # REDIS_SECRET_ARN at the edge); kept out of repr so it never reaches a log line.
    redis_password: str = field(default="", repr=False)
    redis_namespace: str = "beast"
    database_url: str | None = None
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    lpo_port: int = 8080
    lrs_port: int = 9090
    lpo_udp_port: int = 2679
    lrs_udp_port: int = 2680
    region: str = "us-east-2"
    cluster_node: str = "BeastMain"
    language: str = "en"
    agent_account_id: str = AGENT_ACCOUNT_ID
    agent_profiles: Mapping[str, str] = field(default_factory=lambda: dict(AGENT_PROFILES))  # kind -> profile
    ip_address: str = "127.0.0.1"
    report_server: bool = True
    exchange_priority: tuple[str, ...] = EXCHANGES
    ws_url_overrides: Mapping[str, str] = field(default_factory=dict)  # exchange -> URL; others use production
    rest_url_overrides: Mapping[str, str] = field(default_factory=dict)
    feeds: bool = True
    prewarm: bool = True
    stale_after_s: float = 30.0
    usage_flush_s: float = 1.0
    sync_every_s: float = 60.0
    usage_minute_days: float = 7.0
    usage_hour_days: float = 90.0
    key_cache_s: float = 5.0
    log_level: str = "INFO"
    server: str = "uvicorn"  # the LPO listener's HTTP/WebSocket server: one of SERVERS
    # The stack's own network, for partner onboarding (docs/partners.md); empty = not set.
    partner_service_name: str = ""
    vpc_id: str = ""
    vpc_cidr: str = "10.0.0.0/16"
    aws_account_id: str = ""
    route_table_id: str = ""
    partner_security_group_id: str = ""
    udp_nlb_ip: str = ""
    admin_key_secret_arn: str = ""  # the first admin key goes to this Secrets Manager secret, not stdout
    ws_max_per_key: int = 20  # open /ws/prices connections per non-partner key; 0 = no limit
    ws_max_per_ip: int = 100  # open /ws/prices connections per client address (non-partner keys); 0 = no limit
    # Limits no client may pass (docs/configuration.md, "Limits per client"; docs/reliability.md).
    report_max_buckets: int = 20_000  # periods one report may span
    report_max_days: Mapping[str, int] = field(default_factory=lambda: dict(REPORT_MAX_DAYS))
    report_timeout_s: float = 10.0  # per report query (statement_timeout / SQLite interrupt)
    max_connections: int = 4096  # open HTTP connections per server; 0 = no limit
    max_connections_per_ip: int = 256  # open HTTP connections per client address; 0 = no limit
    body_timeout_s: float = 10.0  # a declared request body must arrive within this
    udp_amplification_factor: int = 3  # answer UDP senders without a valid key at most this many times their bytes
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For is believed
    metrics_networks: tuple[str, ...] = ()  # besides loopback, who may read /metrics
    metrics_token: str = ""  # or a bearer token for /metrics
    cursor_key: str = ""  # report cursor MAC key; empty: generated once, kept in the database
    # Billing (docs/usage.md): units a limited key may be served per process while the cache is
    # unreachable (0 = refuse), pushes per asset per second to one WebSocket client, and the
    # shortest interval between two REST calls for one (exchange, asset).
    usage_offline_allowance: int = 100
    ws_max_pushes_per_s: float = 10.0
    rest_min_interval_s: float = 1.0

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "beast.db"


def _allowance(env: Mapping[str, str]) -> int:
    """BEAST_USAGE_OFFLINE_ALLOWANCE: a whole number >= 0, where 0 means refuse while the cache is down."""
    try:
        return limit(env, "BEAST_USAGE_OFFLINE_ALLOWANCE", 100)
    except ConfigError:
        raw = env.get("BEAST_USAGE_OFFLINE_ALLOWANCE")
        raise ConfigError(
            f"BEAST_USAGE_OFFLINE_ALLOWANCE: expected a whole number of units (0 = refuse while the cache is unreachable), got {raw!r}"
        ) from None


def _own_ip() -> str:
    """The address this host is known by; loopback when the host name does not resolve."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _language(env: Mapping[str, str]) -> str:
    raw = env.get("BEAST_LANGUAGE", "").strip()
    if not raw:
        return "en"
    if not _LANGUAGE.match(raw):
        raise ConfigError(f"BEAST_LANGUAGE: expected a language tag such as en or en-US, got {raw[:40]!r}")
    return raw


def _agent_profiles(env: Mapping[str, str]) -> dict[str, str]:
    """Each kind's agent profile name: the default, or BEAST_AGENT_PROFILE_<KIND>."""
    if env.get("BEAST_AGENT_PROFILE_ARN", "").strip():
        # Retired: the ARN is built in the seed's form now. Refused rather than silently ignored, so
        # a deployment still setting it (an IAM role ARN before issue 15) learns it at start-up.
        raise ConfigError(
            "BEAST_AGENT_PROFILE_ARN: no longer read; agent_profile_arn is built from BEAST_REGION, "
            "BEAST_AGENT_ACCOUNT_ID and BEAST_AGENT_PROFILE_<KIND> (see docs/configuration.md)"
        )
    profiles: dict[str, str] = {}
    for kind, default in AGENT_PROFILES.items():
        name = f"BEAST_AGENT_PROFILE_{kind.upper()}"
        raw = env.get(name, "").strip()
        if raw and not _PROFILE.match(raw):
            raise ConfigError(
                f"{name}: expected a profile name of letters, digits, '.', '-' or '_' (at most 64), got {raw[:70]!r}"
            )
        profiles[kind] = raw or default
    return profiles


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    ws_urls: dict[str, str] = {}
    rest_urls: dict[str, str] = {}
    for name in EXCHANGES:
        upper = name.upper()
        ws = url(env, f"BEAST_{upper}_WS_URL", ("ws", "wss"), None)
        rest = url(env, f"BEAST_{upper}_REST_URL", ("http", "https"), None)
        if ws is not None:
            ws_urls[name] = ws
        if rest is not None:
            rest_urls[name] = rest

    priority_raw = env.get("BEAST_EXCHANGE_PRIORITY", "")
    if priority_raw.strip():
        priority = tuple(p.strip().lower() for p in priority_raw.split(",") if p.strip())
        unknown = [p for p in priority if p not in EXCHANGES]
        if unknown or len(set(priority)) != len(priority) or not priority:
            raise ConfigError(
                f"BEAST_EXCHANGE_PRIORITY: expected distinct names from {', '.join(EXCHANGES)}, got {priority_raw!r}"
            )
        # Exchanges left out keep their default order after the named ones.
        priority = priority + tuple(e for e in EXCHANGES if e not in priority)
    else:
        priority = EXCHANGES

    namespace = env.get("BEAST_REDIS_NAMESPACE", "beast").strip() or "beast"
    if not namespace.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"BEAST_REDIS_NAMESPACE: expected letters, digits, '-' or '_', got {namespace!r}")

    log_level = env.get("BEAST_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"BEAST_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    region = env.get("BEAST_REGION", "us-east-2").strip()
    node = env.get("BEAST_CLUSTER_NODE", "BeastMain").strip()
    for setting, value in (("BEAST_REGION", region), ("BEAST_CLUSTER_NODE", node)):
        if not value or any(c in value for c in "[]\n\r"):
            raise ConfigError(f"{setting}: expected a non-empty name without brackets, got {value!r}")
    if any(c in region for c in ":/ \t"):  # it is also a part of the agent profile ARN
        raise ConfigError(f"BEAST_REGION: expected a region name such as us-east-2, got {region!r}")

    settings = Settings(
        redis_url=url(env, "REDIS_URL", ("redis", "rediss", "unix"), None),
        redis_password=env.get("REDIS_PASSWORD", "").strip(),
        redis_namespace=namespace,
        database_url=url(env, "DATABASE_URL", ("postgresql", "postgres", "sqlite"), None),
        data_dir=Path(env.get("BEAST_DATA_DIR", "./data") or "./data"),
        host=env.get("BEAST_HOST", "127.0.0.1").strip() or "127.0.0.1",
        lpo_port=port_number(env, "BEAST_LPO_PORT", 8080),
        lrs_port=port_number(env, "BEAST_LRS_PORT", 9090),
        lpo_udp_port=port_number(env, "BEAST_LPO_UDP_PORT", 2679),
        lrs_udp_port=port_number(env, "BEAST_LRS_UDP_PORT", 2680),
        region=region,
        cluster_node=node,
        language=_language(env),
        agent_account_id=aws_id(env, "BEAST_AGENT_ACCOUNT_ID", "account", AGENT_ACCOUNT_ID),
        agent_profiles=_agent_profiles(env),
        ip_address=env.get("BEAST_IP_ADDRESS", "").strip() or _own_ip(),
        report_server=boolean(env, "APP_REPORT_SERVER", True),
        exchange_priority=priority,
        feeds=boolean(env, "BEAST_FEEDS", True),
        prewarm=boolean(env, "BEAST_PREWARM", True),
        ws_url_overrides=ws_urls,
        rest_url_overrides=rest_urls,
        stale_after_s=positive_number(env, "BEAST_STALE_AFTER_S", 30.0),
        usage_flush_s=positive_number(env, "BEAST_USAGE_FLUSH_S", 1.0),
        sync_every_s=positive_number(env, "BEAST_SYNC_EVERY_S", 60.0),
        usage_minute_days=positive_number(env, "BEAST_USAGE_MINUTE_DAYS", 7.0, "days"),
        usage_hour_days=positive_number(env, "BEAST_USAGE_HOUR_DAYS", 90.0, "days"),
        key_cache_s=positive_number(env, "BEAST_KEY_CACHE_S", 5.0),
        admin_key_secret_arn=secret_id(env, "BEAST_ADMIN_KEY_SECRET_ARN"),
        ws_max_per_key=limit(env, "BEAST_WS_MAX_PER_KEY", 20),
        ws_max_per_ip=limit(env, "BEAST_WS_MAX_PER_IP", 100),
        report_max_buckets=bounded(env, "BEAST_REPORT_MAX_BUCKETS", 20_000, 1, 1_000_000),
        report_max_days={
            g: bounded(env, f"BEAST_REPORT_MAX_DAYS_{g.upper()}", d, 1, 3_000_000) for g, d in REPORT_MAX_DAYS.items()
        },
        report_timeout_s=positive_number(env, "BEAST_REPORT_TIMEOUT_S", 10.0),
        max_connections=limit(env, "BEAST_MAX_CONNECTIONS", 4096),
        max_connections_per_ip=limit(env, "BEAST_MAX_CONNECTIONS_PER_IP", 256),
        body_timeout_s=positive_number(env, "BEAST_BODY_TIMEOUT_S", 10.0),
        udp_amplification_factor=bounded(env, "BEAST_UDP_AMPLIFICATION_FACTOR", 3, 0, 3),
        trusted_proxies=networks(env, "BEAST_TRUSTED_PROXIES"),
        metrics_networks=networks(env, "BEAST_METRICS_NETWORKS"),
        metrics_token=secret(env, "BEAST_METRICS_TOKEN", 16),
        cursor_key=secret(env, "BEAST_CURSOR_KEY", 32),
        usage_offline_allowance=_allowance(env),
        ws_max_pushes_per_s=positive_number(env, "BEAST_WS_MAX_PUSHES_PER_S", 10.0, "pushes per second"),
        rest_min_interval_s=positive_number(env, "BEAST_REST_MIN_INTERVAL_S", 1.0),
        log_level=log_level,
        server=choice(env, "BEAST_SERVER", SERVERS),
        partner_service_name=aws_id(env, "BEAST_PARTNER_SERVICE_NAME", "service_name"),
        vpc_id=aws_id(env, "BEAST_VPC_ID", "vpc"),
        vpc_cidr=aws_id(env, "BEAST_VPC_CIDR", "cidr", "10.0.0.0/16"),
        aws_account_id=aws_id(env, "BEAST_AWS_ACCOUNT_ID", "account"),
        route_table_id=aws_id(env, "BEAST_ROUTE_TABLE_ID", "route_table"),
        partner_security_group_id=aws_id(env, "BEAST_PARTNER_SECURITY_GROUP_ID", "security_group"),
        udp_nlb_ip=aws_id(env, "BEAST_UDP_NLB_IP", "ipv4"),
    )
    if env.get("FORWARDED_ALLOW_IPS", "").strip():
        raise ConfigError(
            "FORWARDED_ALLOW_IPS: no longer read; set BEAST_TRUSTED_PROXIES to the load balancer's networks "
            "(X-Forwarded-For is believed only from there, never from '*')"
        )
    if settings.lpo_port == settings.lrs_port:
        raise ConfigError(f"BEAST_LRS_PORT: must differ from BEAST_LPO_PORT ({settings.lpo_port})")
    if settings.usage_hour_days < settings.usage_minute_days:
        raise ConfigError(
            f"BEAST_USAGE_HOUR_DAYS: must be at least BEAST_USAGE_MINUTE_DAYS ({settings.usage_minute_days:g})"
        )
    if settings.lpo_udp_port == settings.lrs_udp_port:
        raise ConfigError(f"BEAST_LRS_UDP_PORT: must differ from BEAST_LPO_UDP_PORT ({settings.lpo_udp_port})")
    return settings
