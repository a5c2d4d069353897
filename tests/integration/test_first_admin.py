"""The first admin key on AWS: with BEAST_ADMIN_KEY_SECRET_ARN it goes to Secrets Manager
(moto) and the output says only where; if it cannot be stored, no key is made and start-up
stops with one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import free_port, run_beast

from trinity_beast.app.first_admin import first_start
from trinity_beast.domain.keys import hash_secret
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.domain.settings import load_settings
from trinity_beast.stores.db.postgres import PostgresDatabase
from trinity_beast.transports.server import StartupError


@pytest.fixture
def moto_secrets(monkeypatch: pytest.MonkeyPatch):
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager")


@pytest.fixture
def db(pg_url: str):
    database = PostgresDatabase(pg_url)
    database.migrate()
    yield database
    database.close()


def test_the_first_admin_key_goes_to_secrets_manager_and_only_its_place_is_said(moto_secrets, db) -> None:
    # The template makes the secret (no value, or a placeholder); the first start fills it in.
    arn = moto_secrets.create_secret(Name="trinity-beast/dev/admin-key", Description="first admin key")["ARN"]
    settings = load_settings({"BEAST_ADMIN_KEY_SECRET_ARN": arn})
    lines = first_start(settings, db)
    stored = json.loads(moto_secrets.get_secret_value(SecretId=arn)["SecretString"])
    assert stored["api_key"].startswith("tbk_") and stored["api_key_id"].startswith("ak_")
    key = db.key_by_hash(hash_secret(stored["api_key"]))
    assert key is not None and key.id == stored["api_key_id"] and key.tier == "admin"
    text = "\n".join(lines)
    assert stored["api_key"] not in text and "tbk_" not in text
    assert lines[0] == f"First start: created an admin key ({key.id}) and stored it in Secrets Manager secret {arn}."
    assert f"--secret-id {arn}" in lines[1]

    # A second start makes nothing and leaves the secret alone.
    assert first_start(settings, db) == []
    assert json.loads(moto_secrets.get_secret_value(SecretId=arn)["SecretString"]) == stored
    assert db.count_keys() == 1


def test_a_secret_that_cannot_be_written_stops_start_up_and_makes_no_key(moto_secrets, db) -> None:
    missing = "arn:aws:secretsmanager:us-east-2:123456789012:secret:trinity-beast/nope-AbCdEf"
    with pytest.raises(StartupError) as caught:
        first_start(load_settings({"BEAST_ADMIN_KEY_SECRET_ARN": missing}), db)
    message = str(caught.value)
    assert message.startswith(f"BEAST_ADMIN_KEY_SECRET_ARN: cannot store the first admin key in {missing!r}: ")
    assert message.endswith("; no key was created") and "\n" not in message
    assert db.count_keys() == 0


def test_without_the_setting_the_key_is_printed_as_before(db) -> None:
    lines = first_start(load_settings({}), db)
    assert lines[0].startswith("First start: created an admin key. It is shown once")
    secret = lines[2].split()[1]
    assert db.key_by_hash(hash_secret(secret)) is not None


@pytest.mark.parametrize("value", ["arn:aws:s3:::bucket", "two words"])
def test_a_value_that_is_not_a_secret_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^BEAST_ADMIN_KEY_SECRET_ARN: expected a Secrets Manager secret ARN"):
        load_settings({"BEAST_ADMIN_KEY_SECRET_ARN": value})


def test_beast_serve_stops_in_one_line_when_secrets_manager_is_unreachable(pg_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BEAST_FEEDS": "0",
        "BEAST_PREWARM": "0",
        "BEAST_ADMIN_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-2:123456789012:secret:admin-AbCdEf",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "BEAST_LPO_PORT": str(free_port()),
        "BEAST_LRS_PORT": str(free_port()),
    }
    result = run_beast(["serve"], env, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr  # a start-up failure: one line, exit 2
    [line] = result.stderr.strip().splitlines()
    assert (
        line.startswith("beast: BEAST_ADMIN_KEY_SECRET_ARN: cannot store the first admin key in ")
        and "no key was created" in line
    )
    assert "tbk_" not in result.stdout + result.stderr
    db = PostgresDatabase(pg_url)
    try:
        assert db.count_keys() == 0
    finally:
        db.close()


def test_tasks_starting_together_make_one_first_key(moto_secrets, pg_url: str) -> None:
    """N tasks of a new stack start at once: one admin key between them, and it is the one in the secret."""
    import threading

    arn = moto_secrets.create_secret(Name="trinity-beast/dev/admin-key-race")["ARN"]
    settings = load_settings({"BEAST_ADMIN_KEY_SECRET_ARN": arn})
    setup = PostgresDatabase(pg_url)
    setup.migrate()
    databases = [PostgresDatabase(pg_url) for _ in range(4)]
    start = threading.Barrier(len(databases))
    outputs: list[list[str]] = []
    errors: list[BaseException] = []

    def task(db: PostgresDatabase) -> None:
        try:
            start.wait(30)
            outputs.append(first_start(settings, db))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(db,)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == [] and len(outputs) == len(databases)
        assert sorted(len(lines) for lines in outputs) == [0, 0, 0, 2]  # one task made the key, the others none
        stored = json.loads(moto_secrets.get_secret_value(SecretId=arn)["SecretString"])
        assert setup.count_keys() == 1 and setup.key_by_hash(hash_secret(stored["api_key"])) is not None
    finally:
        for db in [setup, *databases]:
            db.close()
