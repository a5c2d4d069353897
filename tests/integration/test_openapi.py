"""schemathesis against the OpenAPI documents of the LPO and the LRS, served on loopback.

Every operation in each document is called with generated requests (valid ones, then
invalid ones), with an admin key, with a subscriber key and with no key. No answer may be
a 5xx; every valid request's answer must match the documented status codes, content types
and schemas; every JSON answer must be an envelope (the 12 fields, in order). A bounded
number of examples per operation keeps CI fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support import InProcessServer, in_process_server, stack_env

from trinity_beast.domain.envelope import FIELDS
from trinity_beast.domain.tick import Tick

EXAMPLES = 50
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ONLY_NO_5XX = [not_a_server_error]
NOT_ENVELOPES = ("/metrics", "/openapi.json", "/docs")  # Prometheus text and the documents themselves


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    env = {**stack_env(None, "embedded", tmp_path_factory.mktemp("openapi"))}  # type: ignore[arg-type]
    with in_process_server(env, lrs=True) as server:
        now = time.time()
        for asset in ("BTC", "ETH"):
            server.call(
                server.rt.cache.put_tick(
                    Tick(asset, "USD", Decimal("100.5"), None, None, "coinbase", now + 600, now + 600)
                )
            )
        yield server


def assert_envelope(path: str, response: Any) -> None:
    content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis keeps header lists
    if path in NOT_ENVELOPES or not content_type.startswith("application/json"):
        return
    body = json.loads(response.content)
    assert tuple(body) == FIELDS, (path, body)
    assert body["status_code"] == response.status_code
    assert body["status"].startswith("✅" if response.status_code < 400 else "❌")


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert found
    return found


@pytest.mark.parametrize("server", ["LPO", "LRS"])
def test_every_documented_operation_answers_its_documented_envelope(srv: InProcessServer, server: str) -> None:
    url = srv.url if server == "LPO" else srv.lrs_url
    _, subscriber = srv.create_key("subscriber", monthly_limit=10_000_000)
    auths = [{"Authorization": f"Bearer {srv.admin_key}"}, {"Authorization": f"Bearer {subscriber}"}, {}]
    tried: dict[str, int] = {}
    for op in operations(url):
        documented = op.path in ("/price", "/health", "/ready", "/metrics", "/usage/me", "/ws/assets", "/reports/usage")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checks = CONFORMANCE if mode is GenerationMode.POSITIVE and documented else ONLY_NO_5XX

            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:  # run below, within this iteration: op and checks are current
                for headers in auths:
                    response = case.call(base_url=url, headers=headers, timeout=20)
                    case.validate_response(response, checks=checks)  # noqa: B023
                    assert_envelope(op.path, response)  # noqa: B023
                    tried[op.label] = tried.get(op.label, 0) + 1  # noqa: B023

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing invalid can be said to this operation
    assert {"GET /price", "GET /health", "GET /ready", "GET /metrics", "GET /usage/me"} <= set(tried) or server == "LRS"
    assert {"GET /reports/usage", "GET /usage/me"} <= set(tried) or server == "LPO"
