"""The Lambda functions done the Powertools way, as deployed: the database secret read at first
use and re-read after max_age (a blip is retried, a rotated password picked up), the cold-start
metric, the library's log lines in the function's log, POST /partners idempotent (DynamoDB in
moto)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from private_postgres import PrivatePostgres, private_postgres
from support import UNREACHABLE_EXCHANGES
from test_lambda_functions import api_event, deployed_stack, emf_lines, usage_stack  # noqa: F401 (fixtures)
from test_partners_lambda import event as partners_event
from test_partners_lambda import stack  # noqa: F401 (fixture)

from partner_aws import AwsWorld, aws  # noqa: F401 (fixture)
from samlocal import REPO, FakeContext, load_handler

EVENTS = REPO / "events"


def moto_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def fresh_powertools_state() -> Iterator[None]:
    """Powertools keeps fetched secrets, its SDK clients and the cold-start flag per process,
    as Lambda does per container; every test here is a new container."""
    from aws_lambda_powertools.metrics.provider import cold_start
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base

    parameters.clear_caches()
    base.DEFAULT_PROVIDERS.clear()
    cold_start.reset_cold_start_flag()
    yield
    parameters.clear_caches()
    base.DEFAULT_PROVIDERS.clear()


def test_importing_a_handler_reads_no_secret_and_a_blip_is_retried(
    usage_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret does not exist yet at import and at the first request (a blip): the request
    gets a clear 503, the next one (secret now there) is answered."""
    import boto3
    from moto import mock_aws

    from trinity_beast.stores.db.postgres import connect_args

    keys, _ = usage_stack
    args = connect_args(os.environ["DATABASE_URL"])
    moto_env(monkeypatch)
    monkeypatch.delenv("DATABASE_URL")
    with mock_aws():
        monkeypatch.setenv("DATABASE_SECRET_ARN", "trinity-beast/test/late-secret")
        handler = load_handler("ReportsFunction")  # import: no Secrets Manager call, no failure
        context = FakeContext(function_name="ReportsFunction")
        first = handler(api_event("reports_usage_me.json", keys["subscriber"][1]), context)
        assert first["statusCode"] == 503
        body = json.loads(first["body"])
        assert body["error"].startswith(
            "service unavailable: DATABASE_SECRET_ARN: cannot read secret 'trinity-beast/test/late-secret': "
        )
        assert "\n" not in body["error"]
        secret = {
            "username": args["user"],
            "password": "unused-with-trust-auth",
            "host": args["host"],
            "port": args["port"],
            "dbname": args["database"],
            "sslmode": "disable",
        }
        boto3.client("secretsmanager").create_secret(
            Name="trinity-beast/test/late-secret", SecretString=json.dumps(secret)
        )
        second = handler(api_event("reports_usage_me.json", keys["subscriber"][1]), context)
        assert second["statusCode"] == 200, second["body"]
        assert json.loads(second["body"])["data"]["monthly_usage"] == 9


def test_the_sync_function_reports_an_unreadable_secret_and_retries_on_the_next_tick(
    usage_stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import boto3
    from moto import mock_aws

    from trinity_beast.stores.db.postgres import connect_args

    args = connect_args(os.environ["DATABASE_URL"])
    moto_env(monkeypatch)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("BEAST_PREWARM", "false")
    tick = json.loads((EVENTS / "sync_schedule.json").read_text())
    with mock_aws():
        monkeypatch.setenv("DATABASE_SECRET_ARN", "trinity-beast/test/sync-secret")
        handler = load_handler("SyncFunction")
        context = FakeContext(function_name="SyncFunction")
        first = handler(tick, context)
        assert first["ok"] is False
        assert first["error"].startswith("DATABASE_SECRET_ARN: cannot read secret 'trinity-beast/test/sync-secret': ")
        errors = [r for r in emf_lines(capsys.readouterr().out) if "SyncErrors" in r]
        assert errors and errors[0]["SyncErrors"] in (1.0, [1.0])
        secret = {
            "username": args["user"],
            "password": "unused-with-trust-auth",
            "host": args["host"],
            "port": args["port"],
            "dbname": args["database"],
            "sslmode": "disable",
        }
        boto3.client("secretsmanager").create_secret(
            Name="trinity-beast/test/sync-secret", SecretString=json.dumps(secret)
        )
        second = handler(tick, context)
        assert second["ok"] is True and second["requests"] == 6, second


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL that checks passwords (scram), so a stale password really fails."""
    hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    with private_postgres(hba=hba, password="first-password") as server:
        yield server


def test_a_rotated_password_is_picked_up_when_the_connection_is_reopened(
    password_postgres: PrivatePostgres, redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    from trinity_beast.domain.keys import new_key
    from trinity_beast.stores.db.postgres import PostgresDatabase

    port = password_postgres.port
    admin = PostgresDatabase(f"postgresql://postgres:first-password@127.0.0.1:{port}/postgres")
    admin.migrate()
    key, secret_key = new_key("sub", "subscriber", 100)
    admin.insert_key(key)
    for name, value in {
        **UNREACHABLE_EXCHANGES,
        "REDIS_URL": redis_url,
        "BEAST_REDIS_NAMESPACE": redis_namespace,
        "BEAST_PREWARM": "false",
        "DATABASE_SECRET_MAX_AGE_S": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    moto_env(monkeypatch)
    secret = {
        "username": "postgres",
        "password": "first-password",
        "host": "127.0.0.1",
        "port": port,
        "dbname": "postgres",
        "sslmode": "disable",
    }
    with mock_aws():
        sm = boto3.client("secretsmanager")
        arn = sm.create_secret(Name="trinity-beast/test/rotating", SecretString=json.dumps(secret))["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        handler = load_handler("ReportsFunction")
        context = FakeContext(function_name="ReportsFunction")
        me = api_event("reports_usage_me.json", secret_key)
        assert handler(me, context)["statusCode"] == 200

        # Rotation as Secrets Manager does it: the password changes in the database and in the secret.
        admin.execute("ALTER USER postgres PASSWORD 'second-password'")
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": "second-password"}))
        # The function's open connection goes (idle timeout, failover, a proxy's recycling).
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND usename = 'postgres' AND backend_type = 'client backend'"
        )
        deadline = time.monotonic() + 60
        statuses = []
        while True:
            result = handler(me, context)
            statuses.append(result["statusCode"])
            if result["statusCode"] == 200:
                break
            assert result["statusCode"] == 503, result["body"]
            assert time.monotonic() < deadline, f"the new password was never used: {statuses}"
            time.sleep(0.2)
        assert json.loads(result["body"])["data"]["api_key_id"] == key.id
    admin.close()


def test_the_cold_start_is_counted_once_per_container(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    handler = load_handler("AssetsFunction")
    context = FakeContext(function_name="AssetsFunction")
    event = json.loads((EVENTS / "assets_list.json").read_text())
    assert handler(event, context)["statusCode"] == 200
    assert handler(event, context)["statusCode"] == 200
    cold = [r for r in emf_lines(capsys.readouterr().out) if "ColdStart" in r]
    assert len(cold) == 1
    assert cold[0]["ColdStart"] in (1.0, [1.0]) and cold[0]["function_name"] == "AssetsFunction"


def test_library_log_lines_reach_the_function_log(deployed_stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync function's prewarm reports through `trinity_beast.services.prices.prewarm`'s logger: the line
    comes out of the Powertools handler (the function's stdout, its log group) as JSON with
    the invocation's context, like the handler's own."""
    from trinity_beast.transports.aws_lambda.api import logger

    monkeypatch.setenv("BEAST_PREWARM", "true")
    handler = load_handler("SyncFunction")
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # where Lambda's stdout would be
    try:
        result = handler(
            json.loads((EVENTS / "sync_schedule.json").read_text()), FakeContext(function_name="SyncFunction")
        )
        logging.getLogger("trinity_beast.anything").warning("a library printed the key tbk_NotForTheLogs")
    finally:
        logger.registered_handler.setStream(previous)
    assert "tbk_NotForTheLogs" not in stream.getvalue()  # redacted, as in `beast serve`'s logs
    assert "tbk_[redacted]" in stream.getvalue()
    assert result["ok"] is True, result
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    prewarm = [
        r
        for r in lines
        if r["name"] == "trinity_beast.services.prices.prewarm" and r["message"].startswith("prewarm: ")
    ]
    assert prewarm, lines
    assert prewarm[-1]["function_name"] == "SyncFunction" and prewarm[-1]["service"] == "trinity-beast"
    assert prewarm[-1]["function_request_id"] == FakeContext.aws_request_id
    assert any(r["message"] == "usage sync" for r in lines)  # the handler's own line, same format


# --- POST /partners, once only ---------------------------------------------------------------


@pytest.fixture
def idempotency_table(aws: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> str:
    """The table the template makes: key `id`, TTL on `expiration` (moto, inside the aws fixture)."""
    import boto3

    name = "trinity-beast-idempotency"
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", name)
    return name


def kept_records(table: str) -> list[dict[str, Any]]:
    import boto3

    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def test_a_repeated_partner_create_gets_the_first_answer(stack, idempotency_table: str) -> None:
    keys, db = stack
    handler = load_handler("PartnersFunction")
    context = FakeContext(function_name="PartnersFunction")
    create = partners_event("partners_create_peering.json", keys["admin"])

    first = handler(create, context)
    assert first["statusCode"] == 201, first["body"]
    again = handler(json.loads(json.dumps(create)), context)  # a retry: the same caller, the same body
    assert again["statusCode"] == 201 and json.loads(again["body"]) == json.loads(first["body"])
    assert len(db.list_partners()) == 1 and [e.action for e in db.audit_trail()] == ["create"]
    assert len(kept_records(idempotency_table)) == 1

    # An Idempotency-Key names the request: a new key is a new create.
    other = json.loads(json.dumps(create))
    other["headers"]["Idempotency-Key"] = "second-create"
    second = handler(other, context)
    assert second["statusCode"] == 201, second["body"]
    assert json.loads(second["body"])["data"]["partner"]["id"] != json.loads(first["body"])["data"]["partner"]["id"]
    assert len(db.list_partners()) == 2 and len(kept_records(idempotency_table)) == 2

    again = handler(json.loads(json.dumps(other)), context)  # the same key and body: the second answer again
    assert again["statusCode"] == 201 and json.loads(again["body"]) == json.loads(second["body"])
    misused = json.loads(json.dumps(other))
    misused["body"] = json.dumps({**json.loads(create["body"]), "name": "Someone Else"})
    refused = handler(misused, context)
    assert refused["statusCode"] == 422
    assert json.loads(refused["body"])["error"] == "this Idempotency-Key was used for a different create; use a new key"
    assert len(db.list_partners()) == 2

    bad = json.loads(json.dumps(create))
    bad["body"] = "{not json"
    assert handler(bad, context)["statusCode"] == 400
    assert len(kept_records(idempotency_table)) == 2  # a refusal is not kept: a fixed retry is answered afresh

    # Another caller with the same body is not handed the first caller's answer.
    other_admin = handler(partners_event("partners_create_peering.json", keys["subscriber"]), context)
    assert other_admin["statusCode"] == 403


def test_without_a_table_creates_are_not_deduplicated_and_other_routes_never_are(
    stack, idempotency_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, db = stack
    handler = load_handler("PartnersFunction")
    context = FakeContext(function_name="PartnersFunction")
    listing = partners_event("partners_list.json", keys["admin"])
    assert handler(listing, context)["statusCode"] == 200
    assert kept_records(idempotency_table) == []  # GET /partners never goes through the store
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    create = partners_event("partners_create_peering.json", keys["admin"])
    assert handler(create, context)["statusCode"] == 201
    assert handler(create, context)["statusCode"] == 201
    assert len(db.list_partners()) == 2  # answered afresh each time


def test_an_unreachable_store_refuses_the_create_rather_than_risking_a_double(
    stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, db = stack
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "no-such-table")
    handler = load_handler("PartnersFunction")
    result = handler(
        partners_event("partners_create_peering.json", keys["admin"]), FakeContext(function_name="PartnersFunction")
    )
    assert result["statusCode"] == 503
    assert json.loads(result["body"])["error"] == "cannot check for a repeated create right now; retry shortly"
    assert db.list_partners() == []


def test_handler_modules_import_without_aws_or_a_database() -> None:
    """A fresh interpreter imports every handler with no credentials, region, database or secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_"))}
    env["DATABASE_SECRET_ARN"] = "arn:aws:secretsmanager:us-east-2:123456789012:secret:unreachable"
    code = (
        "import sys; sys.path.insert(0, 'tests'); from samlocal import load_handler\n"
        "for fn in ('AssetsFunction', 'ReportsFunction', 'PartnersFunction', 'SyncFunction'): load_handler(fn)\n"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_tracer_sends_x_ray_segments_without_the_response(tmp_path) -> None:
    """With tracing on (as in Lambda with Tracing: Active) each invocation sends an X-Ray
    subsegment for the handler to the daemon address, annotated with the cold start and the
    service, and never the response body (API keys travel in it)."""
    import socket

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "AssetsFunction",
            "LAMBDA_TASK_ROOT": str(REPO),
            "AWS_REGION": "us-east-2",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        }
    )
    code = (
        "import json, sys; sys.path.insert(0, 'tests'); from samlocal import FakeContext, load_handler\n"
        "event = json.load(open('events/assets_list.json'))\n"
        "print(load_handler('AssetsFunction')(event, FakeContext(function_name='AssetsFunction'))['statusCode'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "200", result.stderr
    segments = []
    while not any(s.get("name") == "## handler" for s in segments):
        header, _, body = daemon.recv(65536).decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        segments.append(json.loads(body))
    daemon.close()
    [handler] = [s for s in segments if s.get("name") == "## handler"]
    assert handler["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert handler["annotations"]["ColdStart"] is True and handler["annotations"]["Service"] == "trinity-beast"
    assert "handler response" not in json.dumps(handler.get("metadata", {}))
    assert "/ws/assets" not in json.dumps(handler)  # nothing of the answer
