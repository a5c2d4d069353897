"""template.yaml as CloudFormation would see it: transformed by samtranslator, Conditions evaluated.

Shared by tests/test_template.py and tests/test_deploy_readiness.py. `Stack` resolves the
template's Conditions and Fn::If for one set of parameters (a small evaluator for the
intrinsic functions the template uses), so a test sees the resources a deployed stack of
that mode would have.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from typing import Any

from samlocal import load_template

PARAMS = {
    "LpoImageUri": "123456789012.dkr.ecr.us-east-2.amazonaws.com/lpo:1",
    "LrsImageUri": "123456789012.dkr.ecr.us-east-2.amazonaws.com/lrs:1",
}
MODES = ("independent", "combined", "hybrid")


class _NoPolicies:
    """samtranslator's managed-policy loader, offline (the library ships its own list)."""

    def load(self) -> dict[str, str]:
        return {}


def transformed() -> dict[str, Any]:
    """The SAM template as plain CloudFormation (local code URIs swapped for dummy S3 ones)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-2")
    from samtranslator.translator.transform import transform

    sam = load_template()
    for res in sam["Resources"].values():
        props = res.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(props.get(uri), str):
                props[uri] = f"s3://bucket/{props[uri].strip('/')}.zip"
    return transform(sam, {}, _NoPolicies())


def defaults(cfn: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    values = {name: p.get("Default") for name, p in cfn["Parameters"].items()}
    values.update(PARAMS)
    values.update(overrides)
    for name, p in cfn["Parameters"].items():
        if p["Type"] == "CommaDelimitedList" and isinstance(values[name], str):
            values[name] = values[name].split(",")
    values.update(
        {"AWS::Region": "us-east-2", "AWS::AccountId": "123456789012", "AWS::StackName": "tb", "AWS::Partition": "aws"}
    )
    return values


class Stack:
    """The translated template with Conditions and Fn::If resolved for one set of parameters."""

    def __init__(self, cfn: dict[str, Any], params: dict[str, Any]) -> None:
        self.params = params
        self.conditions: dict[str, bool] = {}
        self._raw = cfn["Conditions"]
        for name in self._raw:
            self.condition(name)
        self.resources = {
            name: self.resolve(copy.deepcopy(res))
            for name, res in cfn["Resources"].items()
            if "Condition" not in res or self.conditions[res["Condition"]]
        }

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self._raw[name]))
        return self.conditions[name]

    def value(self, node: Any) -> Any:
        """Evaluate a condition expression or a plain value."""
        if isinstance(node, dict) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref" and arg in self.params:
                return self.params[arg]
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.value(a) for a in arg)
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
        return node

    def resolve(self, node: Any) -> Any:
        """Replace Fn::If by its chosen branch and parameter Refs by their values, everywhere."""
        none = {"Ref": "AWS::NoValue"}
        if isinstance(node, list):
            return [v for v in map(self.resolve, node) if v != none]
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                cond, yes, no = node["Fn::If"]
                return self.resolve(yes if self.condition(cond) else no)
            if set(node) == {"Ref"} and node["Ref"] in self.params:
                return self.params[node["Ref"]]
            if set(node) == {"Fn::Select"}:
                index, items = self.resolve(node["Fn::Select"])
                if isinstance(items, list):
                    return items[index]
            if set(node) == {"Fn::Cidr"}:  # [block, count, host bits] -> the first `count` subnets
                block, count, bits = self.resolve(node["Fn::Cidr"])
                if isinstance(block, str):
                    network = ipaddress.ip_network(block)
                    subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
                    return [str(n) for n, _ in zip(subnets, range(int(count)), strict=False)]
            if set(node) == {"Fn::Join"}:
                sep, parts = self.resolve(node["Fn::Join"])
                if isinstance(parts, list) and all(isinstance(x, str) for x in parts):
                    return sep.join(parts)
            return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v != none}
        return node

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.resources.items() if r["Type"] == kind}

    def props(self, name: str) -> dict[str, Any]:
        return self.resources[name]["Properties"]

    def container(self, task: str) -> dict[str, Any]:
        [c] = self.props(task)["ContainerDefinitions"]
        return c


def stack(cfn: dict[str, Any], **params: Any) -> Stack:
    return Stack(cfn, defaults(cfn, **params))


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def for_scanning(cfn: dict[str, Any]) -> dict[str, Any]:
    """The transformed template with each API's checkov skips (and their reasons) on the stage SAM
    generates for it: SAM copies a function's Metadata to the function, but not an API's to its stage."""
    cfn = copy.deepcopy(cfn)
    for stage in cfn["Resources"].values():
        if stage["Type"] == "AWS::ApiGateway::Stage":
            api = cfn["Resources"][stage["Properties"]["RestApiId"]["Ref"]]
            skips = api.get("Metadata", {}).get("checkov")
            if skips:
                stage.setdefault("Metadata", {})["checkov"] = skips
    return cfn


if __name__ == "__main__":  # `make lint`: python tests/cfnstack.py OUT.json (the scanner's input)
    import json
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python tests/cfnstack.py OUT.json")
    with open(sys.argv[1], "w") as out:
        json.dump(for_scanning(transformed()), out, indent=1)
