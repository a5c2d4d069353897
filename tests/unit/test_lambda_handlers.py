"""The Lambda handlers' own answers, invoked in-process the way `sam local invoke -e events/...`
would: layer and events per function, the assets listing, malformed events. Nothing here
needs Redis or PostgreSQL (those functions are in tests/integration/test_lambda_functions.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samlocal import EVENTS, REPO, emf_lines, functions, invoke, load_template


def events_for(code_uri: str) -> list[Path]:
    prefix = Path(code_uri).name + "_"
    return sorted(p for p in EVENTS.glob("*.json") if p.name.startswith(prefix))


def test_every_function_uses_the_layer_and_has_events() -> None:
    template = load_template()
    assert template["Resources"]["CommonLayer"]["Metadata"]["BuildMethod"] == "python3.11"
    for name, props in functions(template).items():
        assert props["Runtime"] == "python3.11"
        assert {"Ref": "CommonLayer"} in props["Layers"], name
        assert (REPO / props["CodeUri"] / "app.py").exists(), name
        assert events_for(props["CodeUri"]), f"no events/{Path(props['CodeUri']).name}_*.json for {name}"


def test_assets_function_lists_the_registry() -> None:
    event = json.loads((EVENTS / "assets_list.json").read_text())
    result = invoke("AssetsFunction", event)
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    # One rule for the tag: GET /ws/assets is an LPO route, so the function answers as the LPO would.
    assert body["status"] == "✅ [LPO] [us-east-2] [BeastMain] [/ws/assets] [200]" and body["endpoint"] == "/ws/assets"
    assert body["agent_profile_arn"] == "arn:tbi:us-east-2:211998422884:agent-profile/tbi/v1"
    assert body["data"]["count"] == 150 and body["data"]["assets"][0]["asset"] == "BTC"


@pytest.mark.parametrize(
    "event,why",
    [
        ("not an event", "expected an API Gateway proxy event object"),
        ({}, "missing or non-string 'httpMethod'"),
        ({"httpMethod": "GET", "path": "/ws/assets", "headers": "x"}, "'headers' must be an object or null"),
    ],
)
def test_a_malformed_event_gets_a_clear_error(event: object, why: str) -> None:
    result = invoke("AssetsFunction", event)
    assert result["statusCode"] == 400
    body = json.loads(result["body"])
    assert body["status"].startswith("❌") and body["error"] == f"malformed event: {why}"


def test_an_unknown_route_is_a_ume_404() -> None:
    event = json.loads((EVENTS / "assets_list.json").read_text())
    event["path"] = event["resource"] = "/nope"
    result = invoke("AssetsFunction", event)
    assert result["statusCode"] == 404
    assert json.loads(result["body"])["error"] == "unknown path /nope"


@pytest.mark.parametrize(
    "event,why",
    [
        ("tick", "expected an EventBridge scheduled event object, got str"),
        (
            {"detail-type": "Object Created", "source": "aws.s3"},
            "expected detail-type 'Scheduled Event', got 'Object Created'",
        ),
    ],
)
def test_sync_refuses_a_malformed_event_with_a_clear_error(
    event: object, why: str, capsys: pytest.CaptureFixture
) -> None:
    result = invoke("SyncFunction", event)
    assert result == {"ok": False, "error": f"malformed event: {why}"}
    names = {
        d["Name"] for m in emf_lines(capsys.readouterr().out) for d in m["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert names - {"ColdStart"} == {"MalformedEvents"}  # a first invocation also reports its cold start


def test_a_malformed_api_event_is_counted_as_a_4xx(capsys: pytest.CaptureFixture) -> None:
    assert invoke("AssetsFunction", {"httpMethod": 1})["statusCode"] == 400
    [record] = [
        r for r in emf_lines(capsys.readouterr().out) if "ColdStart" not in r
    ]  # a first invocation also reports its cold start
    assert record["Responses4xx"] == [1.0] or record["Responses4xx"] == 1.0
    assert record["function"] == "AssetsFunction" and record["service"] == "trinity-beast"
