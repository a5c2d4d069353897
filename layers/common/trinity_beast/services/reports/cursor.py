"""Report cursors: where the next page starts, signed so an edited or foreign cursor is
refused with a clear message instead of answering a wrong page.

The MAC key is the deployment's own (policy.cursor_key: a setting, or a random key made on
first start): with a key in the code anyone could sign a cursor of their own. Every
malformed, unsigned or out-of-range cursor is a ReportError (400), never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from trinity_beast.services.reports.errors import ReportError

_MIN_TS, _MAX_TS = 0, 253_370_764_800  # 1970-01-01 .. 9999-01-01: what a report range may hold


def _sign(payload: bytes, key: bytes) -> str:
    if len(key) < 16:
        raise ValueError("cursor key too short: it must be the deployment's secret")
    return hashlib.blake2b(payload, key=key[:64], digest_size=16).hexdigest()


def encode_cursor(
    after: tuple[object, ...], fingerprint: str, span: tuple[int, int] | None = None, *, key: bytes
) -> str:
    """`span`: the report's (start, end) as the first page resolved them, so later pages asked
    without from/to cover the same range even when "now" has moved on."""
    payload = orjson.dumps({"after": list(after), "q": fingerprint, **({"span": list(span)} if span else {})})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(payload, key)


_BAD_CURSOR = "cursor: not a cursor from this report; start again without one"


def _cursor_payload(cursor: str, key: bytes) -> dict[str, Any]:
    """The signed payload of a cursor; ReportError when it was not made here or was edited."""
    body, _, mac = cursor.partition(".")
    if len(cursor) > 4096 or not cursor.isascii():
        raise ReportError(_BAD_CURSOR)
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise ReportError(_BAD_CURSOR) from None
    if not mac or not hmac.compare_digest(_sign(payload, key).encode(), mac.encode("utf-8", "surrogatepass")):
        raise ReportError(_BAD_CURSOR)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ReportError(_BAD_CURSOR) from None
    if not isinstance(data, dict):
        raise ReportError(_BAD_CURSOR)
    return data


def cursor_span(cursor: str, *, key: bytes) -> tuple[int, int] | None:
    span = _cursor_payload(cursor, key).get("span")
    if span is None:
        return None
    if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
        raise ReportError(_BAD_CURSOR)
    if not _MIN_TS <= span[0] < span[1] <= _MAX_TS:
        raise ReportError(_BAD_CURSOR)
    return span[0], span[1]


def decode_cursor(cursor: str, fingerprint: str, *, key: bytes) -> tuple[object, ...]:
    bad = ReportError(_BAD_CURSOR)
    data = _cursor_payload(cursor, key)
    try:
        after = data["after"]
        shape_ok = (
            isinstance(after, list)
            and len(after) == 6
            and isinstance(after[0], int)
            and isinstance(after[5], int)
            and all(isinstance(v, str) for v in after[1:5])
        )
    except (KeyError, TypeError):
        raise bad from None
    if not shape_ok:
        raise bad
    if data.get("q") != fingerprint:
        raise ReportError("cursor: it belongs to a report with other filters; start again without one")
    return tuple(after)
