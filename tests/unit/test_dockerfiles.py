"""The Fargate images' Dockerfiles and the build context, read as files (the images' entrypoints
run in tests/integration/test_containers.py)."""

from __future__ import annotations

import pytest

from dockerfiles import IMAGES, REPO, instructions, parse

# The Python each image runs: the one the test suite runs on (3.13 was measured for the LPO and
# did not pay, bench/GAPS.md; `make test-py313` keeps the price server passing on it).
PYTHON = {"lpo": "3.11", "lrs": "3.11"}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_slim_non_root_and_exec_form(image: str) -> None:
    port_setting, udp_setting, exposed, command = IMAGES[image]
    df = parse(REPO / "containers" / image / "Dockerfile")
    assert all(stage.startswith(f"python:{PYTHON[image]}-slim") for stage in df.stages), df.stages
    assert df.user and df.user.split(":")[0] not in ("root", "0"), "the service must not run as root"
    assert df.expose == exposed
    assert df.env[port_setting] == exposed[0].split("/")[0] and df.env[udp_setting] == exposed[1].split("/")[0]
    assert df.env["BEAST_HOST"] == "0.0.0.0" and df.env["PYTHONUNBUFFERED"] == "1"
    assert df.entrypoint == ["beast"] and df.cmd == command
    assert "--interval=" in df.healthcheck and "/health" in df.healthcheck and port_setting in df.healthcheck
    if image == "lpo":
        assert df.env["APP_REPORT_SERVER"] == "false"
    # Only the installed package reaches the final image, not the build context.
    assert df.copies == ["--from=build /install /usr/local"]


def test_dockerignore_keeps_only_the_package_in_the_context() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!layers/common/"} <= set(lines)
    build_copies = [a for w, a in instructions((REPO / "containers/lpo/Dockerfile").read_text()) if w == "COPY"]
    for args in build_copies[:-1]:
        for source in args.split()[:-1]:
            assert (REPO / source).exists(), source
