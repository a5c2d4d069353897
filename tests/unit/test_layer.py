"""The Lambda layer holds what the functions import, and nothing else, at the servers' pins."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from layer_requirements import layer_requirements  # noqa: E402

FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())
# Never in a function: the servers and the simulator are for the containers and tests.
SERVER_ONLY = {"uvicorn", "uvloop", "httptools", "websockets", "beast_sim", "granian"}
# The Lambda Python runtime provides these itself.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_requirements_file_is_generated_from_the_layer_extra() -> None:
    committed = (ROOT / "layers/common/requirements.txt").read_text()
    assert committed == layer_requirements(), "run `make layer-requirements` and commit the result"


def test_layer_pins_are_the_servers_pins() -> None:
    project = _pyproject()["project"]
    pins = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["aws"]}
    for requirement in project["optional-dependencies"]["layer"]:
        assert "==" in requirement, f"{requirement}: the layer pins exact versions"
        assert pins.get(_name(requirement)) == requirement, f"{requirement} differs from the servers' pin"


def _lazy_imports(function: str) -> list[str]:
    """Modules the handler imports inside its functions (at the first request, not at init)."""
    tree = ast.parse((ROOT / "functions" / function / "app.py").read_text())
    return sorted(
        {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    )


def _third_party_imports(function: str) -> set[str]:
    """Top-level modules outside the standard library that the handler loads, lazy imports too."""
    code = (
        "import sys, json, importlib; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); import app; "
        "[importlib.import_module(m) for m in json.loads(sys.argv[2])]; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - {m.split('.')[0] for m in before})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "functions" / function), json.dumps(_lazy_imports(function))],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-2", "POWERTOOLS_METRICS_NAMESPACE": "test"},
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return {m for m in loaded if m not in sys.stdlib_module_names and not m.startswith("_")}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_imports_only_what_the_layer_holds(function: str) -> None:
    modules = _third_party_imports(function)
    assert not modules & SERVER_ONLY, f"{function} imports server-only modules {sorted(modules & SERVER_ONLY)}"
    layer = {_name(r) for r in _pyproject()["project"]["optional-dependencies"]["layer"]}
    distributions = importlib.metadata.packages_distributions()
    allowed: set[str] = set()
    todo = list(layer)
    while todo:  # what the layer's packages pull in (their optional extras too: httpx tries click)
        name = todo.pop()
        if name in allowed:
            continue
        allowed.add(name)
        try:
            todo += [_name(r) for r in importlib.metadata.requires(name) or []]
        except importlib.metadata.PackageNotFoundError:
            pass
    for module in modules - RUNTIME_PROVIDED - {"trinity_beast", "app"}:
        dists = {_name(d) for d in distributions.get(module, [module])}
        assert dists & allowed or dists <= RUNTIME_PROVIDED, (
            f"{function} imports {module} ({', '.join(sorted(dists))}), which the layer does not install"
        )
