"""The uvicorn version pyproject.toml pins, and a failure that names it.

The modules that reach into uvicorn's internals (transports/ws/uvicorn_direct.py,
transports/http/guards.py) have tests that check what they rely on against the installed
uvicorn; when one breaks, the message says which pin it was written for, what is installed,
and what changed, so an upgrade fails on that line instead of somewhere in a socket.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned() -> str:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for spec in dependencies:
        found = re.fullmatch(r"uvicorn==([\w.]+)", spec.strip())
        if found:
            return found.group(1)
    raise AssertionError(f"{PYPROJECT}: no exact uvicorn pin (uvicorn==X) among the dependencies")


PINNED = pinned()
INSTALLED = version("uvicorn")


def require(condition: object, module: str, relied_on: str, found: str) -> None:
    """Fail loudly unless `condition`: `module` relies on `relied_on`, the installed uvicorn has `found`."""
    if not condition:
        raise AssertionError(
            f"uvicorn changed under {module}: it was written for uvicorn=={PINNED} (pinned in pyproject.toml; "
            f"installed {INSTALLED}) and relies on {relied_on}, but now {found}. "
            f"Adapt {module} to the new uvicorn (or keep the pin) before upgrading."
        )
