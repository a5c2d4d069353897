"""The API Gateway key authorizer, invoked the way `sam local invoke -e events/authorizer_*.json` would,
against the real PostgreSQL the functions use (DATABASE_URL)."""

from __future__ import annotations

import json
import time

import pytest

from samlocal import REPO, invoke

EVENTS = REPO / "events"


@pytest.fixture
def keys(pg_url: str, monkeypatch: pytest.MonkeyPatch):
    """An active and a revoked key in the database the authorizer reads; a fresh authorizer module each test."""
    from trinity_beast.domain.keys import new_key
    from trinity_beast.stores.db.postgres import PostgresDatabase

    monkeypatch.setenv("DATABASE_URL", pg_url)
    db = PostgresDatabase(pg_url)
    db.migrate()
    active, active_secret = new_key("authorizer test", "subscriber")
    revoked, revoked_secret = new_key("authorizer revoked", "admin")
    db.insert_key(active)
    db.insert_key(revoked)
    db.revoke_key(revoked.id, time.time())
    yield {"active": (active, active_secret), "revoked": (revoked, revoked_secret)}
    db.close()


def event(name: str, authorization: str | None) -> dict:
    e = json.loads((EVENTS / name).read_text())
    if authorization is None:
        del e["headers"]["Authorization"], e["multiValueHeaders"]["Authorization"]
    else:
        e["headers"]["Authorization"] = e["multiValueHeaders"]["Authorization"][0] = authorization
    return e


def test_a_valid_key_is_allowed_on_the_whole_stage_with_its_id_and_tier(keys) -> None:
    key, secret = keys["active"]
    answer = invoke("AuthorizerFunction", event("authorizer_bearer_key.json", f"Bearer {secret}"))
    assert answer["principalId"] == key.id
    [statement] = answer["policyDocument"]["Statement"]
    # API Gateway reuses a cached answer for every route: the Allow must cover the stage.
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-2:123456789012:a1b2c3d4e5/Prod/*",
    }
    assert answer["context"] == {"keyId": key.id, "tier": "subscriber"}
    # The header name's case does not matter (HTTP headers are case-insensitive).
    e = event("authorizer_bearer_key.json", None)
    e["headers"]["authorization"] = f"bearer {secret}"
    assert invoke("AuthorizerFunction", e)["principalId"] == key.id


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer ",
        "Bearer tbk_unknown_key_that_no_one_has_0123456789",
        "Basic dXNlcjpwYXNz",
        "Bearer \x01\x02bad",
    ],
    ids=["no header", "empty", "empty bearer", "unknown key", "basic auth", "junk"],
)
def test_anything_but_a_known_active_key_is_a_401(keys, authorization: str | None) -> None:
    with pytest.raises(Exception) as refused:
        invoke("AuthorizerFunction", event("authorizer_bearer_key.json", authorization))
    assert str(refused.value) == "Unauthorized"  # the message API Gateway turns into a 401


def test_a_revoked_key_is_a_401(keys) -> None:
    _, secret = keys["revoked"]
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke("AuthorizerFunction", event("authorizer_bearer_key.json", f"Bearer {secret}"))


def test_the_sample_event_without_a_bearer_key_is_refused(keys) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke("AuthorizerFunction", json.loads((EVENTS / "authorizer_not_bearer.json").read_text()))


@pytest.mark.parametrize(
    "bad",
    ["not an event", {}, {"methodArn": 7}, {"methodArn": "arn:aws:s3:::bucket/key"}, {"methodArn": "nope"}],
)
def test_a_malformed_event_is_refused_without_touching_the_database(bad, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # unreachable: must not be asked
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke("AuthorizerFunction", bad)


def test_as_deployed_it_reads_the_database_secret_by_arn(keys, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template gives the authorizer DATABASE_SECRET_ARN, not a URL (the secret in moto here)."""
    import boto3
    from moto import mock_aws

    from trinity_beast.stores.db.postgres import connect_args

    args = connect_args(pg_url)
    monkeypatch.delenv("DATABASE_URL")
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        secret = {
            "username": args["user"],
            "password": "unused-with-trust-auth",
            "host": args["host"],
            "port": args["port"],
            "dbname": args["database"],
            "sslmode": "disable",
        }
        arn = boto3.client("secretsmanager").create_secret(
            Name="trinity-beast/test/authorizer", SecretString=json.dumps(secret)
        )["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        key, secret_value = keys["active"]
        answer = invoke("AuthorizerFunction", event("authorizer_bearer_key.json", f"Bearer {secret_value}"))
    assert answer["principalId"] == key.id and answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
