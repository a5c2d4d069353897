"""One settings object, read once from the environment.

Every setting is documented in docs/configuration.md. A bad value stops start-up with one
line that names the setting (ConfigError), never a traceback deep inside a server.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

# The exchanges we read, in default priority order. Everything else about one exchange
# (production URLs, REST rate, parsing) lives in trinity_beast/exchanges/<name>.py; settings
# hold only the BEAST_<EX>_WS_URL / _REST_URL overrides (tests and `beast serve --sim` point
# them at the simulator), resolved where they are used by exchanges.ws_url / rest_url.
EXCHANGES: tuple[str, ...] = ("coinbase", "kraken", "gemini", "gateio", "cryptocom", "okx")


SERVERS = ("uvicorn", "granian")  # BEAST_SERVER: what serves the LPO's HTTP and WebSockets


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
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
    language: str = "python"
    agent_profile_arn: str = ""
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
    server: str = "uvicorn"  # the HTTP/WebSocket server of the LPO listener: one of SERVERS
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

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "beast.db"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a port number 1-65535, got {raw!r}") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}: expected a port number 1-65535, got {value}")
    return value


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number >= 0, where 0 means no limit."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit():
        raise ConfigError(f"{name}: expected a whole number (0 = no limit), got {raw!r}")
    return int(raw.strip())


def _positive_float(env: Mapping[str, str], name: str, default: float, unit: str = "seconds") -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
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
        raise ConfigError(f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}")
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
        raise ConfigError(f"{name}: expected a Secrets Manager secret ARN (arn:aws…:secretsmanager:…) or name, got {raw!r}")
    return raw


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

    server = env.get("BEAST_SERVER", "uvicorn").strip().lower() or "uvicorn"
    if server not in SERVERS:
        raise ConfigError(f"BEAST_SERVER: expected {' or '.join(SERVERS)}, got {env.get('BEAST_SERVER')!r}")
    region = env.get("BEAST_REGION", "us-east-2").strip()
    node = env.get("BEAST_CLUSTER_NODE", "BeastMain").strip()
    for setting, value in (("BEAST_REGION", region), ("BEAST_CLUSTER_NODE", node)):
        if not value or any(c in value for c in "[]\n\r"):
            raise ConfigError(f"{setting}: expected a non-empty name without brackets, got {value!r}")

    settings = Settings(
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix"), None),
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
        language=env.get("BEAST_LANGUAGE", "python").strip() or "python",
        agent_profile_arn=env.get("BEAST_AGENT_PROFILE_ARN", "").strip(),
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
        log_level=log_level,
        server=server,
        partner_service_name=_aws(env, "BEAST_PARTNER_SERVICE_NAME", "service_name"),
        vpc_id=_aws(env, "BEAST_VPC_ID", "vpc"),
        vpc_cidr=_aws(env, "BEAST_VPC_CIDR", "cidr", "10.0.0.0/16"),
        aws_account_id=_aws(env, "BEAST_AWS_ACCOUNT_ID", "account"),
        route_table_id=_aws(env, "BEAST_ROUTE_TABLE_ID", "route_table"),
        partner_security_group_id=_aws(env, "BEAST_PARTNER_SECURITY_GROUP_ID", "security_group"),
        udp_nlb_ip=_aws(env, "BEAST_UDP_NLB_IP", "ipv4"),
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
