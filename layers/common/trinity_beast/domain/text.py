"""ASCII-only parsing of what clients type: asset symbols and whole numbers.

Python's `str.upper`, `int` and `str.isdigit` accept far more than ASCII (`"ß".upper()` is
"SS", `int("٣")` is 3, `int("1_000")` is 1000, `int(" 5 ")` is 5), so one request could be
spelled many ways and reach the cache, the meter and the logs under another name. Every
transport parses through these two functions instead.
"""

from __future__ import annotations

import re

_ASSET = re.compile(r"[A-Za-z0-9]{1,15}")
_DIGITS = re.compile(r"[0-9]{1,18}")


def asset_symbol(raw: str) -> str | None:
    """`raw` (surrounding spaces ignored) as an upper-case symbol of 1-15 ASCII letters or
    digits, or None."""
    text = raw.strip(" ")
    if not _ASSET.fullmatch(text):
        return None
    return text.upper()


def whole_number(raw: str) -> int | None:
    """`raw` as a whole number written only with ASCII digits 0-9 (no sign, spaces or `_`),
    or None."""
    return int(raw) if _DIGITS.fullmatch(raw) else None
