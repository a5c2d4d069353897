"""Examples that cannot run here (AWS, Docker, `sam deploy`, `make test` inside `make test`),
checked as far as an offline machine can: the shell parses the block, every `aws` command is
accepted by the AWS CLI (`--generate-cli-skeleton`, which parses every option without calling
AWS) or, without the CLI, names an operation and parameters of botocore's model; `docker build
-f` files exist; `sam deploy` names a config env of samconfig.toml and parameters of
template.yaml; `make` targets exist (`make -n`). `sam validate` itself runs in `make sam` (CI).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib

from docsrun.blocks import ROOT

AWS_GLOBAL = {"--region", "--query", "--output", "--profile", "--endpoint-url"}
# AWS CLI commands that are not API operations (the CLI's own customizations), with their options.
AWS_CUSTOM = {("ecr", "get-login-password"): set()}
DUMMY = {"ACCOUNT": "123456789012", "REGION": "us-east-2", "TAG": "abc1234"}


def commands(block: str) -> list[str]:
    """Each simple command of a shell block: continuations joined, comments dropped,
    `$(…)` contents and pipelines split out, leading VAR=value assignments removed."""
    text = re.sub(r"\\\n\s*", " ", block)
    found: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        for inner in re.findall(r"\$\(([^()]*)\)", line):
            found.append(inner.strip())
        line = re.sub(r"\$\([^()]*\)", "VALUE", line)
        for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", line):
            words = shlex.split(part)
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                words.pop(0)
            if words:
                found.append(shlex.join(words))
    return found


def expand(command: str) -> list[str]:
    """The command's words with $VARS replaced by plausible values."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return DUMMY.get(name, f"{name.lower()}-value")

    return shlex.split(re.sub(r"\$\{(\w+)\}|\$(\w+)", value, command))


def check_aws(words: list[str]) -> str | None:
    service, operation, args = words[1], words[2], words[3:]
    if (service, operation) in AWS_CUSTOM:
        unknown = [a for a in args if a.startswith("--") and a not in AWS_CUSTOM[(service, operation)] | AWS_GLOBAL]
        return f"aws {service} {operation}: unknown options {unknown}" if unknown else None
    if shutil.which("aws"):
        env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-2", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        result = subprocess.run(
            ["aws", *words[1:], "--generate-cli-skeleton"], capture_output=True, text=True, timeout=60, env=env
        )
        if result.returncode != 0:
            return f"{shlex.join(words)}: the AWS CLI refuses it: {' '.join(result.stderr.split())[-300:]}"
        return None
    return check_aws_model(service, operation, args)


def check_aws_model(service: str, operation: str, args: list[str]) -> str | None:
    """Without the CLI: the operation and its parameters against botocore's model."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    if service not in session.get_available_services():
        return f"aws {service}: no such service"
    model = session.get_service_model(service)
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    if operation not in operations:
        return f"aws {service} {operation}: no such operation"
    shape = model.operation_model(operations[operation]).input_shape
    members = {xform_name(name, "-"): name for name in (shape.members if shape else {})}
    given = {a[2:] for a in args if a.startswith("--") and a not in AWS_GLOBAL}
    unknown = sorted(given - set(members))
    missing = [m for m in (shape.required_members if shape else []) if xform_name(m, "-") not in given]
    if unknown or missing:
        return f"aws {service} {operation}: unknown {unknown}, missing required {missing}"
    return None


def template_parameters() -> set[str]:
    text = (ROOT / "template.yaml").read_text()
    section = text.split("\nParameters:", 1)[1]
    section = re.split(r"\n\S", section, maxsplit=1)[0]
    return set(re.findall(r"^  ([A-Za-z0-9]+):", section, re.M))


def template_resources() -> set[str]:
    text = (ROOT / "template.yaml").read_text()
    section = re.split(r"\n\S", text.split("\nResources:", 1)[1], maxsplit=1)[0]
    return set(re.findall(r"^  ([A-Za-z0-9]+):", section, re.M))


def check_sam_local(words: list[str]) -> str | None:
    """`sam local invoke FUNCTION -e EVENT --env-vars FILE`: the function, event and file exist."""
    if words[2:3] != ["invoke"] or len(words) < 4:
        return f"{shlex.join(words)}: expected sam local invoke FUNCTION …"
    if words[3] not in template_resources():
        return f"sam local invoke {words[3]}: template.yaml has no such resource"
    for flag in ("-e", "--event", "--env-vars"):
        if flag in words and not (ROOT / words[words.index(flag) + 1]).is_file():
            return f"sam local invoke {flag} {words[words.index(flag) + 1]}: no such file"
    return None


def check_sam(words: list[str]) -> str | None:
    if words[1] == "local":
        return check_sam_local(words)
    if words[1] not in ("build", "deploy", "validate"):
        return f"sam {words[1]}: not a command the docs should need"
    if words[1] != "deploy":
        return None
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    if "--config-env" in words:
        env = words[words.index("--config-env") + 1]
        if env not in config:
            return f"sam deploy --config-env {env}: samconfig.toml has only {sorted(config)}"
    if "--parameter-overrides" in words:
        pairs = words[words.index("--parameter-overrides") + 1].split()
        names = {pair.split("=", 1)[0] for pair in pairs if "=" in pair}  # $(…) expansions stand for the rest
        unknown = sorted(names - template_parameters())
        if unknown:
            return f"sam deploy --parameter-overrides: template.yaml has no parameter {unknown}"
    return None


def check_command(command: str) -> str | None:
    words = expand(command)
    tool = words[0]
    if tool == "aws":
        return check_aws(words)
    if tool == "sam":
        return check_sam(words)
    if tool == "docker":
        if words[1] == "build" and "-f" in words and not (ROOT / words[words.index("-f") + 1]).is_file():
            return f"docker build -f {words[words.index('-f') + 1]}: no such file"
        return None
    if tool == "make":
        result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        return None if result.returncode == 0 else f"{command}: {result.stderr.strip()[-300:]}"
    if tool == "git":
        return None
    return f"{command}: no offline check for {tool!r}; run it (run: sh) or add a check to tools/docsrun/syntax.py"


def check_block(text: str) -> list[str]:
    problems = []
    parsed = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
    if parsed.returncode != 0:
        problems.append(f"bash -n: {parsed.stderr.strip()}")
    for command in commands(text):
        problem = check_command(command)
        if problem:
            problems.append(problem)
    return problems
