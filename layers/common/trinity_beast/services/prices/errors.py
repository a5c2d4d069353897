"""Why a price request is refused or cannot be priced; the messages are shown to clients."""

from __future__ import annotations


class BadRequest(ValueError):
    """A request the client must fix; the message says how."""


class NoPrice(LookupError):
    """No exchange could price the asset; the message says why for each one tried."""


class Throttled(NoPrice):
    """The asset was fetched by REST too recently to be fetched again (upstream protection)."""
