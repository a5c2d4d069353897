"""template.yaml through the external linters: cfn-lint, and `sam validate --lint` when the SAM
CLI's own virtual environment exists. Both run as child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from samlocal import REPO


def test_template_passes_cfn_lint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "template.yaml"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_passes_sam_validate_lint_when_the_sam_cli_is_installed() -> None:
    sam = REPO / ".sam-venv" / "bin" / "sam"
    if not sam.exists():
        pytest.skip("no .sam-venv (.ci/run creates it and runs `sam validate --lint` itself)")
    result = subprocess.run(
        [str(sam), "validate", "--lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-2", "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
