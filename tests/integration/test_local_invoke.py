"""`make invoke` (sam local invoke without Docker) and env.json (what `sam local invoke --env-vars` takes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from samlocal import REPO, functions

SCRIPT = [sys.executable, str(REPO / "tests" / "localinvoke.py")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPT, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-2"},
    )


def test_invoke_runs_a_function_on_an_event_file_and_prints_its_answer() -> None:
    result = run("assets", "events/assets_list.json")
    assert result.returncode == 0, result.stderr
    # stdout carries the function's own log and metric lines first, then the answer.
    answer = json.loads(result.stdout[result.stdout.index("\n{\n") + 1 :])
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body["endpoint"] == "/ws/assets" and body["cluster_node"] == "local-lambda"  # from env.json


def test_invoke_refuses_an_unknown_function_or_a_missing_event_clearly() -> None:
    unknown = run("nope", "events/assets_list.json")
    assert unknown.returncode != 0 and "FN: expected one of" in unknown.stderr and "AssetsFunction" in unknown.stderr
    missing = run("assets", "events/no_such_event.json")
    assert missing.returncode != 0 and "EVENT: cannot read a JSON event" in missing.stderr


def test_env_json_only_sets_variables_the_template_declares() -> None:
    """`sam local invoke --env-vars` silently ignores a variable the function does not declare."""
    values = json.loads((REPO / "env.json").read_text())
    declared = {name: set(props["Environment"]["Variables"]) for name, props in functions().items()}
    every = set.union(*declared.values())
    assert set(values["Parameters"]) <= every, set(values["Parameters"]) - every
    for section, variables in values.items():
        if section != "Parameters":
            assert section in declared, section
            assert set(variables) <= declared[section], (section, set(variables) - declared[section])
    # Local runs use local stores, never a secret in someone's AWS account.
    assert values["Parameters"]["DATABASE_SECRET_ARN"] == values["Parameters"]["REDIS_SECRET_ARN"] == ""
    assert values["Parameters"]["DATABASE_URL"].startswith("postgresql://")
