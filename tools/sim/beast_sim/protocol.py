"""What one simulated exchange provides: a WebSocket protocol and REST handlers.

The base the per-exchange modules (beast_sim/exchanges/) build on, so the server can drive
any of them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from beast_sim.state import SimSession, SimState

# A REST handler answers one request for the exchange; the route table pairs each with its
# path relative to the exchange's real REST base (Starlette `{name}` parameters).
RestHandler = Callable[[SimState, Request], Awaitable[Response]]
RestRoute = tuple[str, RestHandler]


class SimProtocol(ABC):
    """One exchange's WebSocket protocol: answers client frames, builds updates and heartbeats,
    using the message shapes documented in shared/exchange-protocols.md."""

    name = ""
    heartbeat_s: float | None = None  # server heartbeat period (overridable per simulator)
    subscribe_deadline_s: float | None = None  # close if nothing subscribed by then

    def on_connect(self, s: SimSession) -> list[str]:
        return []

    @abstractmethod
    def on_text(self, s: SimSession, text: str) -> list[str]: ...

    @abstractmethod
    def updates(self, s: SimSession, symbols: list[str]) -> list[str]: ...

    def heartbeat(self, s: SimSession) -> list[str]:
        return []

    @abstractmethod
    def bad_ticker(self, s: SimSession, symbol: str) -> str:
        """A well-formed frame with an unusable price, for garbage mode."""
        ...


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
