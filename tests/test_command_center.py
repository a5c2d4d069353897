"""The Command Center (/admin on the LRS): the page's shell and its admin-only JSON, and a
real browser (Playwright driving Debian's Chromium) walking every tab against a server with
the exchange simulator, the feeds and EC2 in moto. Screenshots go to test-output/."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from partner_aws import REGION, AwsWorld, aws  # noqa: F401 (fixture)
from support import REPO, InProcessServer, in_process_server, require_service, stack_env
from trinity_beast.domain.envelope import FIELDS

STATIC = REPO / "layers/common/trinity_beast/transports/http/static"
SHOTS = REPO / "test-output" / "command-center"
CHROMIUM = "/usr/bin/chromium"
# As the machine notes say: no sandbox as root, and nothing that reaches for the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
PARTNER_ACCOUNT = "111122223333"


@pytest.fixture
def center(request: pytest.FixtureRequest, tmp_path: Path, aws: AwsWorld) -> Iterator[InProcessServer]:  # noqa: F811
    env = {**stack_env(request, "embedded", tmp_path), **aws.env}
    with in_process_server(env, sim=True, feeds=True, lrs=True) as srv:
        yield srv


# --- the shell and the JSON ---------------------------------------------------------------


def test_the_page_is_a_shell_that_holds_no_data(center: InProcessServer) -> None:
    page = httpx.get(center.lrs_url + "/admin")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and page.headers["cache-control"] == "no-store"
    html = page.text
    assert center.admin_id not in html and "ak_" not in html
    assert not re.search(r"tbk_[A-Za-z0-9_-]{8,}", html)  # no secret, only the input's placeholder
    assert not re.search(r"<script>(?!\s*</script>)", html)  # no inline script: everything is a static file
    for name in re.findall(r'(?:src|href)="(/admin/static/[^"]+)"', html):
        asset = httpx.get(center.lrs_url + name)
        assert asset.status_code == 200 and asset.content, name
    assert httpx.get(center.lrs_url + "/admin/static/../../config.py").status_code == 404
    assert httpx.get(center.lrs_url + "/admin/static/secrets.txt").status_code == 404
    assert "cdn" not in html.lower() and "https://" not in html


def test_chart_js_is_vendored_and_pinned() -> None:
    banner = (STATIC / "chart.umd.min.js").read_text()[:200]
    version = re.search(r"Chart\.js v(\d+\.\d+\.\d+)", banner).group(1)
    assert f"| chart.js | {version} |" in (STATIC / "VENDORED.md").read_text()
    assert version.startswith("4.")
    import hashlib

    digest = hashlib.sha256((STATIC / "chart.umd.min.js").read_bytes()).hexdigest()
    assert digest in (STATIC / "VENDORED.md").read_text()


def test_the_page_data_needs_the_admin_key(center: InProcessServer) -> None:
    _, subscriber = center.create_key("subscriber", name="someone")
    for path in ("/admin/api/session", "/admin/api/usage", "/admin/api/feeds"):
        anonymous = httpx.get(center.lrs_url + path)
        assert anonymous.status_code == 401 and tuple(anonymous.json()) == FIELDS
        refused = httpx.get(center.lrs_url + path, headers={"Authorization": f"Bearer {subscriber}"})
        assert refused.status_code == 403 and "needs an admin key" in refused.json()["error"]
    admin = {"Authorization": f"Bearer {center.admin_key}"}
    session = httpx.get(center.lrs_url + "/admin/api/session", headers=admin).json()["data"]
    assert session["api_key_id"] == center.admin_id and session["ws_path"] == "/ws/prices"
    assert session["lpo_port"] == int(center.url.rsplit(":", 1)[1])
    with httpx.Client(base_url=center.url, headers={"Authorization": f"Bearer {subscriber}"}) as lpo:
        for _ in range(3):
            lpo.get("/price", params={"asset": "BTC,ETH"})
    deadline = time.time() + 10
    while time.time() < deadline:
        usage = httpx.get(center.lrs_url + "/admin/api/usage", headers=admin, params={"range": "1h"}).json()["data"]
        if usage["totals"]["requests"] >= 3:
            break
        time.sleep(0.3)
    assert len(usage["labels"]) == 60 and usage["granularity"] == "minute"
    assert usage["by_key"][0]["name"] == "someone" and sum(usage["by_key"][0]["counts"]) >= 3
    assert {a["asset"] for a in usage["top_assets"]} >= {"BTC", "ETH"}
    assert [p["protocol"] for p in usage["by_protocol"]] == ["http", "udp", "ws"]
    bad = httpx.get(center.lrs_url + "/admin/api/usage", headers=admin, params={"range": "1y"})
    assert bad.status_code == 400 and bad.json()["error"] == "range: expected one of 1h, 24h, 7d"
    feeds = httpx.get(center.lrs_url + "/admin/api/feeds", headers=admin).json()["data"]
    assert feeds["in_process"] and set(feeds["exchanges"]) == {"coinbase", "kraken", "gemini", "gateio", "cryptocom", "okx"}
    assert feeds["ticker_assets"][0] == "BTC"


# --- a real browser -----------------------------------------------------------------------


def _browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM)


def test_the_command_center_in_a_browser(center: InProcessServer, aws: AwsWorld, tmp_path: Path) -> None:  # noqa: F811
    require_service(f"Playwright and Debian's Chromium ({CHROMIUM})", _browser_available())
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    account = aws.partner_account()
    linked_vpc, peered_vpc = account.vpc("172.31.0.0/16"), account.vpc("172.30.0.0/16")
    _, subscriber = center.create_key("subscriber", name="Desk A")

    # Another partner, onboarded through the API and peered, so the tables are not all new.
    admin_headers = {"Authorization": f"Bearer {center.admin_key}"}
    with httpx.Client(base_url=center.lrs_url, headers=admin_headers, timeout=20) as api:
        peered = api.post("/partners", json={
            "name": "Zeta Quant", "aws_account_id": PARTNER_ACCOUNT, "region": REGION, "connection_type": "peering",
            "vpc_id": peered_vpc["vpc_id"], "cidr": peered_vpc["cidr"], "route_table_id": peered_vpc["route_table_id"],
        }).json()["data"]
        assert api.post(f"/partners/{peered['partner']['id']}/approve",
                        json={"connection_id": account.request_peering(peered_vpc)}).status_code == 200
    # Traffic for the usage charts: two keys, HTTP, several assets.
    with httpx.Client(base_url=center.url, timeout=10) as lpo:
        for i in range(24):
            secret = subscriber if i % 3 else peered["api_key"]["key"]
            lpo.get("/price", params={"asset": ["BTC", "ETH", "SOL", "BTC,ETH"][i % 4]}, headers={"Authorization": f"Bearer {secret}"})

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        context.set_default_timeout(20_000)
        page = context.pages[0] if context.pages else context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        shot = lambda name: page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # noqa: E731

        # Sign in: nothing shows without the admin key, and a non-admin key is refused.
        page.goto(center.lrs_url + "/admin")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        page.fill("#admin-key", subscriber)
        page.click("#signin-button")
        expect(page.locator("#signin-error")).to_have_text("That key is not an admin key.")
        shot("00-sign-in-refused")
        page.fill("#admin-key", center.admin_key)
        page.click("#signin-button")
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#who")).to_have_text(center.admin_id)

        # Onboarding: the wizard writes the commands and issues the key once.
        page.click("button.tab[data-tab=onboarding]")
        page.fill("#w-name", "Acme Trading")
        page.fill("#w-account", "12345")
        page.fill("#w-region", REGION)
        page.fill("#w-vpc", linked_vpc["vpc_id"])
        page.fill("#w-subnets", linked_vpc["subnet_id"])
        page.click("#wizard-create")
        expect(page.locator("#wizard-error")).to_contain_text("aws_account_id: expected an id like 123456789012")
        page.fill("#w-account", PARTNER_ACCOUNT)
        page.click("#wizard-preview")
        expect(page.locator("#wizard-result .cmd")).to_have_count(2)
        page.click("#wizard-create")
        expect(page.locator("#new-partner-key")).to_contain_text("tbk_")
        expect(page.locator("#wizard-result pre").nth(1)).to_contain_text("aws ec2 create-vpc-endpoint --region us-east-2")
        expect(page.locator("#wizard-result pre").nth(2)).to_contain_text("aws ec2 accept-vpc-endpoint-connections")
        partner_id = page.locator("#wizard-result").get_attribute("data-partner")
        copy_button = page.locator("#wizard-result .cmd button").first
        copy_button.click()
        expect(copy_button).to_have_text("Copied")
        shot("01-onboarding")

        # The partner runs its command; the request shows under Pending Approvals; approve it.
        endpoint = account.request_endpoint(linked_vpc)
        page.click("button.tab[data-tab=pending]")
        row = page.locator(f"#pending-table tr[data-connection='{endpoint}']")
        expect(row).to_contain_text("Acme Trading")
        expect(page.locator("#pending-count")).to_have_text("1")
        shot("02-pending-approvals")
        row.get_by_role("button", name="Accept").click()
        expect(page.locator("#toast")).to_contain_text("Acme Trading: active")
        expect(page.locator("#pending-empty")).to_be_visible()
        assert aws.endpoints.state(endpoint) == "available"

        # Partners: both active, with their keys and usage; the detail shows the audit trail.
        page.click("button.tab[data-tab=partners]")
        acme = page.locator(f"#partners-table tr[data-partner='{partner_id}']")
        expect(acme).to_have_attribute("data-status", "active")
        expect(page.locator("#partners-table tbody tr")).to_have_count(2)
        acme.get_by_role("button", name="Details").click()
        expect(page.locator("#partner-detail .audit li")).to_have_count(3)  # create, register, approve
        shot("03-partners")

        # Security groups: a bad CIDR is explained, a good one added, then removed.
        page.click("button.tab[data-tab=security]")
        expect(page.locator("#sg-table tr[data-cidr='172.30.0.0/16']")).to_contain_text("Zeta Quant")
        page.fill("#sg-cidr", "198.51.100.7/24")
        page.click("#sg-add")
        expect(page.locator("#sg-error")).to_contain_text("host bits are set; did you mean 198.51.100.0/24?")
        page.fill("#sg-cidr", "10.0.7.0/24")
        page.click("#sg-add")
        expect(page.locator("#sg-error")).to_contain_text("overlaps this stack's VPC 10.0.0.0/16")
        page.fill("#sg-cidr", "198.51.100.0/24")
        page.fill("#sg-desc", "Acme office")
        page.click("#sg-add")
        expect(page.locator("#sg-table tr[data-cidr='198.51.100.0/24']")).to_contain_text("Acme office")
        assert ("198.51.100.0/24", 2680) in aws.udp_rules()
        shot("04-security-groups")
        page.locator("#sg-table tr[data-cidr='198.51.100.0/24']").get_by_role("button", name="Remove").click()
        expect(page.locator("#sg-table tr[data-cidr='198.51.100.0/24']")).to_have_count(0)
        assert ("198.51.100.0/24", 2680) not in aws.udp_rules()

        # Usage: the charts are drawn with the requests made above.
        page.click("button.tab[data-tab=usage]")
        page.wait_for_function("Number(document.getElementById('tab-usage').dataset.total || 0) >= 24")
        drawn = page.evaluate(
            "() => ['chart-keys', 'chart-protocols', 'chart-assets'].map(id => "
            "Chart.getChart(id).data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + b, 0), 0))"
        )
        assert drawn[0] >= 24 and drawn[1] >= 24 and drawn[2] >= 24, drawn
        legend = page.evaluate("() => Chart.getChart('chart-keys').data.datasets.map(d => d.label)")
        assert any(label.startswith("Desk A") for label in legend), legend
        shot("05-usage")

        # Feeds: every exchange connected, and a live price that changes on screen.
        page.click("button.tab[data-tab=feeds]")
        expect(page.locator("#ws-state")).to_have_text("live")
        expect(page.locator(".feed[data-state=connected]")).to_have_count(6)
        btc = page.locator("#ticker tr[data-asset=BTC]")
        expect(btc).to_have_attribute("data-price", re.compile(r"\d"))
        first = btc.get_attribute("data-price")
        page.wait_for_function(
            "first => { const r = document.querySelector('#ticker tr[data-asset=BTC]');"
            " return r && r.dataset.price !== first; }", arg=first,
        )
        assert btc.get_attribute("data-price") != first
        expect(btc.locator(".change")).to_have_text(re.compile(r"[▲▼] \d"))
        expect(btc.locator(".updated")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3} UTC$"))  # from timestamp_ms
        page.wait_for_timeout(600)  # a few more ticks, so the screenshot shows movement
        shot("06-feeds")

        # Signing out forgets the key.
        page.click("#signout")
        expect(page.locator("#signin")).to_be_visible()
        assert page.evaluate("() => sessionStorage.length") == 0
        assert errors == [], errors
        context.close()
    for name in ("00-sign-in-refused", "01-onboarding", "02-pending-approvals", "03-partners",
                 "04-security-groups", "05-usage", "06-feeds"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, name
