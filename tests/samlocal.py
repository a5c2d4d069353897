"""`sam local invoke` without a container: load a function's handler from template.yaml.

Reads the template with a loader that understands CloudFormation's short tags (without
touching PyYAML's global loader), applies Globals, puts the shared layer on sys.path and
imports the handler module under a unique name (every function's module is `app.py`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"  # sample events, one file per function and case (`sam local invoke -e`)


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"  # `!Condition X` is {"Condition": X}
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = REPO / "template.yaml") -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


@dataclass
class FakeContext:
    function_name: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-2:123456789012:function:test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def functions(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Logical id -> function properties with Globals applied."""
    template = template or load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    out = {}
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            props = {**globals_, **res["Properties"]}
            env = {
                **globals_.get("Environment", {}).get("Variables", {}),
                **res["Properties"].get("Environment", {}).get("Variables", {}),
            }
            props["Environment"] = {"Variables": env}
            out[name] = props
    return out


def load_handler(logical_id: str) -> Callable[[Any, Any], Any]:
    props = functions()[logical_id]
    layer = str(REPO / "layers" / "common")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    module_name, func = props["Handler"].rsplit(".", 1)
    path = REPO / props["CodeUri"] / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{logical_id}_{uuid.uuid4().hex[:6]}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func)


def invoke(logical_id: str, event: Any) -> Any:
    return load_handler(logical_id)(event, FakeContext(function_name=logical_id))


def response_headers(result: dict[str, Any]) -> dict[str, list[str]]:
    """The headers a client gets from a proxy response, as API Gateway merges `headers` and
    `multiValueHeaders` (the latter wins for a name in both); names lower-case, since HTTP
    header names are case-insensitive and each adapter spells them its own way."""
    merged = {name.lower(): [value] for name, value in (result.get("headers") or {}).items()}
    merged.update({name.lower(): list(values) for name, values in (result.get("multiValueHeaders") or {}).items()})
    return merged


def emf_lines(text: str) -> list[dict]:
    """The CloudWatch embedded-metric records a function printed (one JSON object a line)."""
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "_aws" in record:
                out.append(record)
    return out
