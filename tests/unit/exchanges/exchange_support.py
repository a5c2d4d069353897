"""Recorded exchange messages (samples/) for the connector tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).with_name("samples")


def sample_text(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def sample(name: str) -> Any:
    return json.loads(sample_text(name))
