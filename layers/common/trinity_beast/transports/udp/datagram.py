"""What the two UDP servers share: one JSON object per datagram in, one envelope out.

A `DatagramServer` answers every datagram in its own task, so one slow or bad request never
holds up another, and sends back what the service's `answer` coroutine returns. On Python
3.12+ that task starts eagerly (`asyncio.eager_task_factory`): an answer that needs no I/O (a
price from the in-process book) is sent inside `datagram_received`, and no task is scheduled. A UDP source
address can be spoofed, so a sender that did not prove a valid key (`Reply.trusted` False)
gets at most `amplification` times the bytes it sent (RFC 9000's anti-amplification rule,
3 by default) or nothing at all: its error is sent only when that error fits, else the
datagram is dropped unanswered. The helpers keep such errors short (SMALL_ANSWER_BYTES) and
every answer within one datagram.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson

from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.services.auth import MISSING_KEY
from trinity_beast.services.prices.answer import too_large

log = logging.getLogger(__name__)

# Python 3.12+: run a task's first step at once; None on 3.11 (every datagram is scheduled).
EAGER_TASK_FACTORY: Callable[..., asyncio.Task[None]] | None = getattr(asyncio, "eager_task_factory", None)

MAX_REQUEST_BYTES = 2048
MAX_ANSWER_BYTES = 4096  # the buffer the documented client reads with
SMALL_ANSWER_BYTES = 512  # ceiling for answers to unauthenticated or malformed datagrams
AMPLIFICATION_FACTOR = 3  # default BEAST_UDP_AMPLIFICATION_FACTOR: answer strangers at most 3x their bytes


TERSE = {401: "invalid API key", 413: "too large", 503: "unavailable", 500: "internal error"}


class Reply(NamedTuple):
    status: int
    payload: bytes
    trusted: bool = False  # the sender proved a valid key: the answer may be larger than its datagram


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
    if not key:
        raise BadDatagram(401, MISSING_KEY["udp"])  # a datagram has no HTTP header
    return msg


def small_error(envelopes: Envelopes, endpoint: str, status: int, message: str) -> bytes:
    """An error envelope for a sender we do not know: never larger than SMALL_ANSWER_BYTES."""
    payload = dumps(envelopes.error(endpoint, status, message))
    if len(payload) > SMALL_ANSWER_BYTES:
        payload = dumps(envelopes.error(endpoint, status, "bad request"))
    return payload


def stranger_error(envelopes: Envelopes, endpoint: str, status: int, message: str, budget: int) -> Reply:
    """The error for a sender that proved no key: the full message when it fits `budget`
    bytes (the anti-amplification allowance), else a terse one; the server drops it when even
    that does not fit (`allowed_to_send`)."""
    payload = small_error(envelopes, endpoint, status, message)
    if len(payload) > budget:
        payload = dumps(envelopes.error(endpoint, status, TERSE.get(status, "bad request")))
    return Reply(status, payload)


def fit(envelopes: Envelopes, endpoint: str, status: int, payload: bytes, key_id: str, advice: str) -> Reply:
    """The answer to a trusted sender, or a 413 saying how to ask when it would not fit one datagram."""
    if len(payload) <= MAX_ANSWER_BYTES:
        return Reply(status, payload, True)
    message = too_large(len(payload), MAX_ANSWER_BYTES, advice)
    return Reply(413, dumps(envelopes.error(endpoint, 413, message, api_key_id=key_id)), True)


Answer = Callable[[bytes], Awaitable[Reply]]
Observe = Callable[[int, float], None]


def allowed_to_send(reply: Reply, received: int, amplification: int) -> bool:
    """The anti-amplification rule: anything to a trusted sender; to a stranger at most
    `amplification` times the bytes it sent (0: nothing)."""
    return reply.trusted or len(reply.payload) <= amplification * received


class DatagramServer(asyncio.DatagramProtocol):
    """Answers each datagram in its own task; `observe(status, seconds)` sees every answer."""

    def __init__(
        self, answer: Answer, fallback: bytes, observe: Observe | None = None, amplification: int = AMPLIFICATION_FACTOR
    ) -> None:
        self._answer_fn = answer
        self._fallback = fallback  # sent when answering failed unexpectedly (already small)
        self._observe = observe
        self.amplification = amplification
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        self.unanswered = 0  # datagrams from strangers whose error would have been too large to send

    def budget(self, data: bytes) -> int:
        """Bytes a stranger's answer to `data` may have."""
        return self.amplification * len(data)

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
            reply = await self._answer_fn(data)
        except Exception:  # one bad datagram never stops the server
            log.exception("UDP request failed")
            reply = Reply(500, self._fallback)
        self.answered += 1
        if self._observe is not None:
            self._observe(reply.status, time.perf_counter() - started)
        if not allowed_to_send(reply, len(data), self.amplification):
            self.unanswered += 1
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply.payload, addr)
