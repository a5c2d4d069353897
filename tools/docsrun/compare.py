"""A documented JSON answer against the one the server gave: the same fields, in the same
order, with values of the same JSON type; exact values only for the fields a tag names.

Nothing about today's answer is written here: what must hold comes from the page.
"""

from __future__ import annotations

from typing import Any


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def differences(documented: Any, real: Any, exact: set[str], path: str = "", depth: int = 99) -> list[str]:
    """What the page says that the answer does not bear out (empty when they agree). Below
    `depth` levels only JSON types are compared (for data-dependent keys, e.g. counts per status)."""
    where = path or "(top)"
    if json_type(documented) != json_type(real):
        return [
            f"{where}: documented {json_type(documented)} {documented!r:.60}, answered {json_type(real)} {real!r:.60}"
        ]
    if depth <= 0:
        return []
    if isinstance(documented, dict):
        problems = []
        missing = [k for k in documented if k not in real]
        extra = [k for k in real if k not in documented]
        if missing:
            problems.append(f"{where}: documented but not answered: {', '.join(missing)}")
        if extra:
            problems.append(f"{where}: answered but not documented: {', '.join(extra)}")
        if not missing and not extra and list(documented) != list(real):
            problems.append(f"{where}: fields in another order: documented {list(documented)}, answered {list(real)}")
        for name in documented:
            if name in real:
                child = f"{path}.{name}" if path else name
                if name in exact and documented[name] != real[name]:
                    problems.append(f"{child}: documented {documented[name]!r}, answered {real[name]!r}")
                elif name not in exact:
                    problems += differences(documented[name], real[name], exact, child, depth - 1)
        return problems
    if isinstance(documented, list):
        if len(documented) != len(real):
            return [f"{where}: documented {len(documented)} item(s), answered {len(real)}"]
        problems = []
        for i, (doc_item, real_item) in enumerate(zip(documented, real, strict=True)):
            problems += differences(doc_item, real_item, exact, f"{path}[{i}]", depth - 1)
        return problems
    return []


def at(value: Any, path: str) -> Any:
    """`data.assets[0]`-style path into a JSON value ('' or '.' is the value itself)."""
    if path in ("", "."):
        return value
    for part in path.split("."):
        name, _, index = part.partition("[")
        if name:
            value = value[name]
        if index:
            value = value[int(index.rstrip("]"))]
    return value
