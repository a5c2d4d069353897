"""Secrets, hashes and MACs are compared in constant time: hmac.compare_digest is what decides,
and no `==` on such a value is left anywhere in the package."""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any

import pytest

from trinity_beast.domain.keys import new_key
from trinity_beast.services import auth as auth_module
from trinity_beast.services.auth import KeyRing
from trinity_beast.services.reports import cursor as cursor_module

REPO = Path(__file__).resolve().parents[2]


def test_comparisons_of_secrets_are_constant_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    from trinity_beast.stores.db.sqlite import SqliteDatabase

    db = SqliteDatabase(tmp_path / "k.db")
    db.migrate()
    key, secret = new_key("k", "subscriber")
    db.insert_key(key)
    monkeypatch.setattr(auth_module.hmac, "compare_digest", recording)
    assert KeyRing(db).lookup(secret) == key and calls
    calls.clear()
    monkeypatch.setattr(cursor_module.hmac, "compare_digest", recording)
    cursor = cursor_module.encode_cursor((0, "ak_1", "/price", "BTC", "http", 200), "f", key=b"k" * 32)
    assert cursor_module.decode_cursor(cursor, "f", key=b"k" * 32) and calls
    # No secret, hash, MAC or digest is compared with == anywhere in the code.
    pattern = re.compile(
        r"(secret|_hash|\bmac\b|signature|digest)\w*\s*[!=]=|[!=]=\s*\w*(secret|_hash|\bmac\b|signature|digest)"
    )
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in (REPO / "layers/common/trinity_beast").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "compare_digest" not in line
    ]
    assert offenders == []
