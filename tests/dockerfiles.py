"""The containers' Dockerfiles read the way Docker builds them: the final stage's ENV, USER,
EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD and COPY lines.

Shared by the unit checks of the files (tests/unit/test_dockerfiles.py) and the run of each
image's entrypoint (tests/integration/test_containers.py), which has no Docker engine to build with.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # containers/<image>/Dockerfile and .dockerignore live here


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile: what the running container gets."""

    stages: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    expose: list[str] = field(default_factory=list)
    healthcheck: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def parse(path: Path) -> Dockerfile:
    df = Dockerfile()
    for word, args in instructions(path.read_text()):
        if word == "FROM":
            df.stages.append(args)
            df.env, df.user, df.expose, df.copies = {}, "", [], []  # only the final stage runs
        elif word == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                df.env[name] = value
        elif word == "USER":
            df.user = args
        elif word == "EXPOSE":
            df.expose += args.split()
        elif word == "HEALTHCHECK":
            df.healthcheck = args
        elif word == "ENTRYPOINT":
            df.entrypoint = json.loads(args)  # exec form, or json.loads fails the test
        elif word == "CMD":
            df.cmd = json.loads(args)
        elif word == "COPY":
            df.copies.append(args)
    return df


IMAGES = {
    # image: (port setting, UDP port setting, ports the image exposes, `beast serve` scope)
    "lpo": ("BEAST_LPO_PORT", "BEAST_LPO_UDP_PORT", ["8080/tcp", "2679/udp"], ["serve", "--only", "lpo"]),
    "lrs": ("BEAST_LRS_PORT", "BEAST_LRS_UDP_PORT", ["9090/tcp", "2680/udp"], ["serve", "--only", "lrs"]),
}
