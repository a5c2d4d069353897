"""Issue 13, probe 9: no third-party code on an admin origin, and /metrics for operators only.

`/docs` loaded Swagger UI from a CDN with no integrity check and no CSP; `/metrics` answered
anyone. Now the Swagger UI files are vendored (static/VENDORED.md, checked here byte for
byte), the page allows scripts from its own origin only, and `/metrics` answers loopback,
BEAST_METRICS_NETWORKS or a bearer BEAST_METRICS_TOKEN. A non-loopback client is made real
through a trusted proxy's X-Forwarded-For (BEAST_TRUSTED_PROXIES=127.0.0.1/32).
"""

from __future__ import annotations

import hashlib
import re
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from support import REPO, InProcessServer, in_process_server, require_service, stack_env

STATIC = REPO / "layers/common/trinity_beast/transports/http/static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "metrics-token-0123456789abcdef"


def start(request: pytest.FixtureRequest, tmp_path: Path, **extra: str) -> AbstractContextManager[InProcessServer]:
    env = stack_env(request, "embedded", tmp_path) | {"BEAST_FEEDS": "false", "BEAST_PREWARM": "false", **extra}
    return in_process_server(env, lrs=True)


@pytest.fixture
def srv(request: pytest.FixtureRequest, tmp_path: Path):
    with start(
        request,
        tmp_path,
        BEAST_TRUSTED_PROXIES="127.0.0.1/32",
        BEAST_METRICS_TOKEN=TOKEN,
        BEAST_METRICS_NETWORKS="192.0.2.0/24",
    ) as server:
        yield server


def test_the_docs_page_loads_nothing_from_elsewhere(srv: InProcessServer) -> None:
    vendored = (STATIC / "VENDORED.md").read_text()
    for base in (srv.url, srv.lrs_url):
        page = httpx.get(f"{base}/docs", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "a third-party URL on the docs page"
        assert "<script>" not in page.text  # no inline script: the CSP would refuse it anyway
        for name in re.findall(r'(?:src|href)="/docs/static/([^"]+)"', page.text):
            asset = httpx.get(f"{base}/docs/static/{name}", timeout=10)
            assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
            if name.startswith("swagger-ui"):
                assert hashlib.sha256(asset.content).hexdigest() in vendored, name
        assert httpx.get(f"{base}/docs/static/..%2Fdocs_ui.py", timeout=10).status_code == 404
        assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 200


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def test_the_docs_render_in_a_browser_under_the_csp(srv: InProcessServer, tmp_path: Path) -> None:
    require_service(f"Playwright and Debian's Chromium ({CHROMIUM})", _browser_available())
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
            outside: list[str] = []
            page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(srv.url) else None)
            page.goto(srv.url + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Trinity Beast LPO")
            expect(page.locator(".opblock-summary-path").first).to_be_visible()
            assert not problems, problems
            assert not outside, outside
        finally:
            browser.close()


def test_metrics_answer_operators_only(srv: InProcessServer) -> None:
    for base in (srv.url, srv.lrs_url):
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200  # loopback
        stranger = {"X-Forwarded-For": "198.51.100.9"}  # a client the (trusted) proxy forwarded
        r = httpx.get(f"{base}/metrics", headers=stranger, timeout=10)
        assert r.status_code == 403 and r.json()["error"].startswith("metrics are for operators")
        assert "beast_" not in r.text
        assert (
            httpx.get(
                f"{base}/metrics", headers=stranger | {"Authorization": f"Bearer {TOKEN}"}, timeout=10
            ).status_code
            == 200
        )
        assert (
            httpx.get(
                f"{base}/metrics", headers=stranger | {"Authorization": f"Bearer {TOKEN}x"}, timeout=10
            ).status_code
            == 403
        )
        assert httpx.get(f"{base}/metrics", headers={"X-Forwarded-For": "192.0.2.44"}, timeout=10).status_code == 200


def test_metrics_settings_are_checked(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from trinity_beast.domain.setting_values import ConfigError
    from trinity_beast.domain.settings import load_settings

    with pytest.raises(ConfigError, match=r"^BEAST_METRICS_TOKEN: expected at least 16"):
        load_settings({"BEAST_METRICS_TOKEN": "short"})
    with pytest.raises(ConfigError, match=r"^BEAST_METRICS_NETWORKS: '\*' would trust every address"):
        load_settings({"BEAST_METRICS_NETWORKS": "*"})
