"""DATABASE_SECRET / DATABASE_SECRET_ARN: Aurora's Secrets Manager secret as the database URL."""

from __future__ import annotations

import json
import ssl

import boto3
import pytest
from moto import mock_aws

from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.stores.db.postgres import connect_args
from trinity_beast.stores.db.secret import url_from_secret
from trinity_beast.stores.environment import load_settings

AURORA = {
    "username": "beast",
    "password": "p@ss:w/rd#1",
    "host": "tb.cluster-x.us-east-2.rds.amazonaws.com",
    "port": 5432,
    "dbname": "beast",
    "engine": "postgres",
}


def test_an_rds_secret_becomes_a_tls_url_pg8000_reads_back() -> None:
    url = url_from_secret(json.dumps(AURORA), "DATABASE_SECRET")
    assert url.endswith("?sslmode=require")
    args = connect_args(url)
    assert (args["user"], args["password"], args["host"], args["port"], args["database"]) == (
        "beast",
        "p@ss:w/rd#1",
        AURORA["host"],
        5432,
        "beast",
    )
    assert args["ssl_context"].verify_mode == ssl.CERT_NONE  # libpq's require: encrypted, not verified


def test_the_environment_points_a_secret_at_rds_proxy_with_full_verification() -> None:
    env = {
        "DATABASE_SECRET": json.dumps(AURORA),
        "DATABASE_HOST": "tb-proxy.proxy-x.us-east-2.rds.amazonaws.com",
        "DATABASE_SSLMODE": "verify-full",
    }
    args = connect_args(load_settings(env).database_url)
    assert args["host"] == env["DATABASE_HOST"] and args["password"] == AURORA["password"]
    assert args["ssl_context"].verify_mode == ssl.CERT_REQUIRED and args["ssl_context"].check_hostname is True
    with pytest.raises(
        ConfigError,
        match=r"^DATABASE_SECRET: sslmode: expected one of disable, require, verify-ca, verify-full, got 'on'$",
    ):
        load_settings({**env, "DATABASE_SSLMODE": "on"})
    # An RDS-managed master secret has only username and password: the host comes from DATABASE_HOST.
    managed = json.dumps({"username": "beast", "password": "p@ss:w/rd#1"})
    args = connect_args(load_settings({**env, "DATABASE_SECRET": managed}).database_url)
    assert (args["host"], args["port"], args["database"]) == (env["DATABASE_HOST"], 5432, "postgres")
    with pytest.raises(ConfigError, match=r"^DATABASE_SECRET: the secret has no host$"):
        load_settings({"DATABASE_SECRET": managed})


@pytest.mark.parametrize(
    "value,error",
    [
        ("not json", "DATABASE_SECRET: expected the secret's JSON value, got something else"),
        ("[1]", "DATABASE_SECRET: expected a JSON object with username, password, host"),
        ('{"username": "u"}', "DATABASE_SECRET: the secret has no password, host"),
        (
            '{"username": "u", "password": "p", "host": "h", "port": "x"}',
            "DATABASE_SECRET: the secret's port is not a number: 'x'",
        ),
    ],
)
def test_a_bad_secret_is_one_line_naming_the_setting(value: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_SECRET": value})
    assert str(caught.value) == error
    assert "p@ss" not in str(caught.value)


def test_precedence_database_url_then_injected_secret_then_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    injected = json.dumps({**AURORA, "host": "injected"})
    assert (
        load_settings({"DATABASE_URL": "postgresql://a@b/c", "DATABASE_SECRET": injected}).database_url
        == "postgresql://a@b/c"
    )
    assert connect_args(load_settings({"DATABASE_SECRET": injected}).database_url)["host"] == "injected"
    assert load_settings({}).database_url is None
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="db", SecretString=json.dumps(AURORA))["ARN"]
        assert connect_args(load_settings({"DATABASE_SECRET_ARN": arn}).database_url)["password"] == "p@ss:w/rd#1"
        with pytest.raises(
            ConfigError,
            match=r"^DATABASE_SECRET_ARN: cannot read secret 'arn:aws:secretsmanager:us-east-2:123456789012:secret:missing'",
        ):
            load_settings({"DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-2:123456789012:secret:missing"})
