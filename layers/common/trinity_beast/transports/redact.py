"""Keep API keys out of logs: a filter on every log handler that blanks anything key-shaped.

Our own code logs key ids, never secrets, but libraries below us may log a request line
(`GET /ws/prices?api_key=…` at DEBUG) or headers. The filter rewrites each record's final
message, so no handler, format or level can let a secret through.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    (re.compile(r"tbk_[A-Za-z0-9_\-]+"), "tbk_[redacted]"),
    (re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(authorization['\"]?\s*[:=,]\s*['\"]?(?:bearer\s+)?)[^\s'\"]+", re.IGNORECASE), r"\1[redacted]"),
)
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "websockets")


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Add the filter to every handler of the loggers that write out (idempotent)."""
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
