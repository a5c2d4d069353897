"""Print the Lambda layer's requirements.txt from pyproject.toml's `layer` extra.

The layer (layers/common) is what `sam build` installs for every function; it must hold what
the functions import and nothing more, with the same pins as the servers. `make
layer-requirements` writes the file; a unit test fails when the two disagree.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# Generated from pyproject.toml's `layer` extra by `make layer-requirements`; do not edit.\n"


def layer_requirements(pyproject: Path = ROOT / "pyproject.toml") -> str:
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    return HEADER + "".join(f"{requirement}\n" for requirement in extras["layer"])


if __name__ == "__main__":
    sys.stdout.write(layer_requirements())
