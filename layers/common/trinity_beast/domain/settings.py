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
from urllib.parse import urlsplit

from trinity_beast.domain.text import whole_number

_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")

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


# The longest report range per granularity, in days (BEAST_REPORT_MAX_DAYS_<GRANULARITY>).
REPORT_MAX_DAYS: dict[str, int] = {"minute": 7, "hour": 400, "day": 3660, "month": 36525}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


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


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw)  # ASCII digits only: no sign, spaces, "_" or other scripts' digits
    if value is None or not 1 <= value <= 65535:
        raise ConfigError(f"{name}: expected a port number 1-65535, got {raw!r}")
    return value


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number >= 0, where 0 means no limit."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = whole_number(raw.strip())
    if value is None:
        raise ConfigError(f"{name}: expected a whole number (0 = no limit), got {raw!r}")
    return value


def _bounded(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` (ASCII digits)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = whole_number(raw.strip())
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {raw!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 networks or addresses (`10.0.0.0/24, 10.0.1.0/24`); never `*`."""
    import ipaddress

    raw = env.get(name, "")
    out: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part == "*":
            raise ConfigError(f"{name}: '*' would trust every address; list the networks, e.g. 10.0.0.0/24,10.0.1.0/24")
        try:
            out.append(str(ipaddress.ip_network(part, strict=True)))
        except ValueError as exc:
            raise ConfigError(
                f"{name}: expected networks such as 10.0.0.0/24 separated by commas, got {part!r} ({exc})"
            ) from None
    return tuple(out)


def _secret(env: Mapping[str, str], name: str, minimum: int) -> str:
    raw = env.get(name, "").strip()
    if raw and (len(raw) < minimum or not raw.isascii() or any(c.isspace() for c in raw)):
        raise ConfigError(
            f"{name}: expected at least {minimum} printable ASCII characters without spaces (a random secret)"
        )
    return raw


def _allowance(env: Mapping[str, str]) -> int:
    """BEAST_USAGE_OFFLINE_ALLOWANCE: a whole number >= 0, where 0 means refuse while the cache is down."""
    try:
        return _limit(env, "BEAST_USAGE_OFFLINE_ALLOWANCE", 100)
    except ConfigError:
        raw = env.get("BEAST_USAGE_OFFLINE_ALLOWANCE")
        raise ConfigError(
            f"BEAST_USAGE_OFFLINE_ALLOWANCE: expected a whole number of units (0 = refuse while the cache is unreachable), got {raw!r}"
        ) from None


def _positive_float(env: Mapping[str, str], name: str, default: float, unit: str = "seconds") -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not _DECIMAL.fullmatch(raw):  # ASCII: float() would take " 5", "1_0" and other scripts' digits
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name}: expected a positive number of {unit}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], default: str | None) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}"
        )
    return raw


def _aws(env: Mapping[str, str], name: str, kind: str, default: str = "") -> str:
    """An AWS id, CIDR or address setting; empty when unset."""
    from trinity_beast.domain.partners.cidr import CidrError, parse_cidr
    from trinity_beast.domain.partners.ids import id_problem, ipv4_problem

    raw = env.get(name, "").strip()
    if not raw:
        return default
    if kind == "cidr":
        try:
            return str(parse_cidr(raw))
        except CidrError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    problem = ipv4_problem(raw) if kind == "ipv4" else id_problem(kind, raw)
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return raw


def _own_ip() -> str:
    """The address this host is known by; loopback when the host name does not resolve."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _secret_id(env: Mapping[str, str], name: str) -> str:
    """A Secrets Manager secret's ARN (or name); empty when unset."""
    raw = env.get(name, "").strip()
    if any(c.isspace() for c in raw) or (raw.startswith("arn:") and ":secretsmanager:" not in raw):
        raise ConfigError(
            f"{name}: expected a Secrets Manager secret ARN (arn:aws…:secretsmanager:…) or name, got {raw!r}"
        )
    return raw


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
        ws = _url(env, f"BEAST_{upper}_WS_URL", ("ws", "wss"), None)
        rest = _url(env, f"BEAST_{upper}_REST_URL", ("http", "https"), None)
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
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix"), None),
        redis_password=env.get("REDIS_PASSWORD", "").strip(),
        redis_namespace=namespace,
        database_url=_url(env, "DATABASE_URL", ("postgresql", "postgres", "sqlite"), None),
        data_dir=Path(env.get("BEAST_DATA_DIR", "./data") or "./data"),
        host=env.get("BEAST_HOST", "127.0.0.1").strip() or "127.0.0.1",
        lpo_port=_port(env, "BEAST_LPO_PORT", 8080),
        lrs_port=_port(env, "BEAST_LRS_PORT", 9090),
        lpo_udp_port=_port(env, "BEAST_LPO_UDP_PORT", 2679),
        lrs_udp_port=_port(env, "BEAST_LRS_UDP_PORT", 2680),
        region=region,
        cluster_node=node,
        language=_language(env),
        agent_account_id=_aws(env, "BEAST_AGENT_ACCOUNT_ID", "account", AGENT_ACCOUNT_ID),
        agent_profiles=_agent_profiles(env),
        ip_address=env.get("BEAST_IP_ADDRESS", "").strip() or _own_ip(),
        report_server=_bool(env, "APP_REPORT_SERVER", True),
        exchange_priority=priority,
        feeds=_bool(env, "BEAST_FEEDS", True),
        prewarm=_bool(env, "BEAST_PREWARM", True),
        ws_url_overrides=ws_urls,
        rest_url_overrides=rest_urls,
        stale_after_s=_positive_float(env, "BEAST_STALE_AFTER_S", 30.0),
        usage_flush_s=_positive_float(env, "BEAST_USAGE_FLUSH_S", 1.0),
        sync_every_s=_positive_float(env, "BEAST_SYNC_EVERY_S", 60.0),
        usage_minute_days=_positive_float(env, "BEAST_USAGE_MINUTE_DAYS", 7.0, "days"),
        usage_hour_days=_positive_float(env, "BEAST_USAGE_HOUR_DAYS", 90.0, "days"),
        key_cache_s=_positive_float(env, "BEAST_KEY_CACHE_S", 5.0),
        admin_key_secret_arn=_secret_id(env, "BEAST_ADMIN_KEY_SECRET_ARN"),
        ws_max_per_key=_limit(env, "BEAST_WS_MAX_PER_KEY", 20),
        ws_max_per_ip=_limit(env, "BEAST_WS_MAX_PER_IP", 100),
        report_max_buckets=_bounded(env, "BEAST_REPORT_MAX_BUCKETS", 20_000, 1, 1_000_000),
        report_max_days={
            g: _bounded(env, f"BEAST_REPORT_MAX_DAYS_{g.upper()}", d, 1, 3_000_000) for g, d in REPORT_MAX_DAYS.items()
        },
        report_timeout_s=_positive_float(env, "BEAST_REPORT_TIMEOUT_S", 10.0),
        max_connections=_limit(env, "BEAST_MAX_CONNECTIONS", 4096),
        max_connections_per_ip=_limit(env, "BEAST_MAX_CONNECTIONS_PER_IP", 256),
        body_timeout_s=_positive_float(env, "BEAST_BODY_TIMEOUT_S", 10.0),
        udp_amplification_factor=_bounded(env, "BEAST_UDP_AMPLIFICATION_FACTOR", 3, 0, 3),
        trusted_proxies=_networks(env, "BEAST_TRUSTED_PROXIES"),
        metrics_networks=_networks(env, "BEAST_METRICS_NETWORKS"),
        metrics_token=_secret(env, "BEAST_METRICS_TOKEN", 16),
        cursor_key=_secret(env, "BEAST_CURSOR_KEY", 32),
        usage_offline_allowance=_allowance(env),
        ws_max_pushes_per_s=_positive_float(env, "BEAST_WS_MAX_PUSHES_PER_S", 10.0, "pushes per second"),
        rest_min_interval_s=_positive_float(env, "BEAST_REST_MIN_INTERVAL_S", 1.0),
        log_level=log_level,
        partner_service_name=_aws(env, "BEAST_PARTNER_SERVICE_NAME", "service_name"),
        vpc_id=_aws(env, "BEAST_VPC_ID", "vpc"),
        vpc_cidr=_aws(env, "BEAST_VPC_CIDR", "cidr", "10.0.0.0/16"),
        aws_account_id=_aws(env, "BEAST_AWS_ACCOUNT_ID", "account"),
        route_table_id=_aws(env, "BEAST_ROUTE_TABLE_ID", "route_table"),
        partner_security_group_id=_aws(env, "BEAST_PARTNER_SECURITY_GROUP_ID", "security_group"),
        udp_nlb_ip=_aws(env, "BEAST_UDP_NLB_IP", "ipv4"),
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
