"""Where a simulator on host:port serves each exchange, as URLs and as BEAST_<EX>_*_URL settings.

Each exchange's REST API sits under `/<exchange>` followed by the real base path taken from
its connector (`/coinbase/api/v3/brokerage/...`), so a connector pointed at the simulator
builds the same request paths it sends in production.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.exchanges import CONNECTORS


def rest_prefix(exchange: str) -> str:
    """`/<exchange>` plus the path of the exchange's real REST base URL (no trailing slash)."""
    return f"/{exchange}{urlsplit(CONNECTORS[exchange].rest_url).path.rstrip('/')}"


def sim_urls(host: str, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """(ws_urls, rest_urls) that point every exchange at a simulator on host:port."""
    ws = {ex: f"ws://{host}:{port}/{ex}" for ex in EXCHANGES}
    rest = {ex: f"http://{host}:{port}{rest_prefix(ex)}" for ex in EXCHANGES}
    return ws, rest


def sim_env(host: str, port: int) -> dict[str, str]:
    """The BEAST_<EX>_WS_URL / BEAST_<EX>_REST_URL settings for a simulator on host:port."""
    ws, rest = sim_urls(host, port)
    env = {f"BEAST_{ex.upper()}_WS_URL": url for ex, url in ws.items()}
    env.update({f"BEAST_{ex.upper()}_REST_URL": url for ex, url in rest.items()})
    return env
