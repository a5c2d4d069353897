"""What every test shares: the `unit` or `integration` marker, given by the folder a test lives in,
and the asset registry.

tests/unit needs no service (no Redis, PostgreSQL, server, child process or socket) and runs in
seconds: `make test-unit`. tests/integration is everything else. The marker comes from the path,
so a test cannot be filed in one folder and marked as the other, and a test outside both fails
the collection instead of silently belonging to neither.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trinity_beast.domain.assets import AssetRegistry, load_registry

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(TESTS):
            continue  # not one of ours (a file given on the command line from elsewhere)
        relative = path.relative_to(TESTS)
        kind = relative.parts[0]
        if kind not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: a test lives in tests/unit or tests/integration, not tests/{relative}"
            )
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def registry() -> AssetRegistry:
    return load_registry()
