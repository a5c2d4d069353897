"""What the two UDP servers share: one JSON object per datagram in, one envelope out.

A `DatagramServer` answers every datagram in its own task, so one slow or bad request never
holds up another, and sends back whatever the service's `answer` coroutine returns. On
Python 3.12+ that task starts eagerly (`asyncio.eager_task_factory`): an answer that needs no
I/O (a price from the in-process book) completes inside `datagram_received`, and the task is
never scheduled. The
helpers keep answers to malformed or unauthenticated requests under SMALL_ANSWER_BYTES (no
amplification from spoofed sources) and every answer within one datagram.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import orjson

from trinity_beast.domain.envelope import Envelopes, dumps

log = logging.getLogger(__name__)

# Python 3.12+: run a task's first step at once; None on 3.11 (every datagram is scheduled).
EAGER_TASK_FACTORY: Callable[..., asyncio.Task[None]] | None = getattr(asyncio, "eager_task_factory", None)

MAX_REQUEST_BYTES = 2048
MAX_ANSWER_BYTES = 4096  # the buffer the documented client reads with
SMALL_ANSWER_BYTES = 512  # ceiling for answers to unauthenticated or malformed datagrams


class BadDatagram(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_object(data: bytes, fields: tuple[str, ...], example: str) -> dict[str, Any]:
    """The datagram's JSON object, checked for size and for fields outside `fields`."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadDatagram(413, f"datagram of {len(data)} bytes is over the {MAX_REQUEST_BYTES}-byte limit")
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadDatagram(400, f"malformed JSON: send {example}") from None
    if not isinstance(msg, dict):
        raise BadDatagram(400, f"expected a JSON object: {example}")
    unknown = [str(k)[:20] for k in msg if k not in fields]
    if unknown:
        raise BadDatagram(400, f"unknown field(s) {', '.join(unknown[:3])}: allowed are {', '.join(fields)}")
    key = msg.get("api_key")
    if key is not None and not isinstance(key, str):
        raise BadDatagram(401, "api_key must be a string")
    return msg


def small_error(envelopes: Envelopes, endpoint: str, status: int, message: str) -> bytes:
    """An error envelope for a sender we do not know: never larger than SMALL_ANSWER_BYTES."""
    payload = dumps(envelopes.error(endpoint, status, message))
    if len(payload) > SMALL_ANSWER_BYTES:
        payload = dumps(envelopes.error(endpoint, status, "bad request"))
    return payload


def fit(envelopes: Envelopes, endpoint: str, status: int, payload: bytes, key_id: str, advice: str) -> tuple[int, bytes]:
    """(status, payload), or a 413 saying how to ask when the answer would not fit one datagram."""
    if len(payload) <= MAX_ANSWER_BYTES:
        return status, payload
    message = f"the answer would be {len(payload)} bytes, over the {MAX_ANSWER_BYTES}-byte datagram limit: {advice}"
    return 413, dumps(envelopes.error(endpoint, 413, message, api_key_id=key_id))


Answer = Callable[[bytes], Awaitable[tuple[int, bytes]]]
Observe = Callable[[int, float], None]


class DatagramServer(asyncio.DatagramProtocol):
    """Answers each datagram in its own task; `observe(status, seconds)` sees every answer."""

    def __init__(self, answer: Answer, fallback: bytes, observe: Observe | None = None) -> None:
        self._answer_fn = answer
        self._fallback = fallback  # sent when answering failed unexpectedly (already small)
        self._observe = observe
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if EAGER_TASK_FACTORY is not None:
            task = EAGER_TASK_FACTORY(asyncio.get_running_loop(), self._answer(data, addr))
            if task.done():  # answered already, without ever being scheduled
                return
        else:
            task = asyncio.ensure_future(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a gone client
        log.debug("UDP error: %s", exc)

    async def _answer(self, data: bytes, addr: Any) -> None:
        started = time.perf_counter()
        try:
            status, payload = await self._answer_fn(data)
        except Exception:  # one bad datagram never stops the server
            log.exception("UDP request failed")
            status, payload = 500, self._fallback
        self.answered += 1
        if self._observe is not None:
            self._observe(status, time.perf_counter() - started)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(payload, addr)
