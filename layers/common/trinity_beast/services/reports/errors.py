"""The one error a report request can raise, in its own module so the filters and the
cursor (which the filters read) can both raise it without importing each other."""

from __future__ import annotations


class ReportError(ValueError):
    """A filter the caller must fix (400); the message says which and how."""
