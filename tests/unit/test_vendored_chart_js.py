"""The Command Center's Chart.js is a vendored file whose version and digest VENDORED.md records
(the page itself is driven in a browser by tests/integration/test_command_center.py)."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "layers/common/trinity_beast/transports/http/static"


def test_chart_js_is_vendored_and_pinned() -> None:
    banner = (STATIC / "chart.umd.min.js").read_text()[:200]
    version = re.search(r"Chart\.js v(\d+\.\d+\.\d+)", banner).group(1)
    assert f"| chart.js | {version} |" in (STATIC / "VENDORED.md").read_text()
    assert version.startswith("4.")
    import hashlib

    digest = hashlib.sha256((STATIC / "chart.umd.min.js").read_bytes()).hexdigest()
    assert digest in (STATIC / "VENDORED.md").read_text()
