"""UDP price requests on the LPO UDP port: one JSON datagram in, one envelope out.

`{"asset": "BTC", "api_key": "KEY"}` (also `"BTC,ETH"` or a list) gets the same envelope as
HTTP `/price`, from the same `answer_price`. An answer always fits one datagram: past
MAX_ANSWER_BYTES the client is told to ask for fewer assets instead of receiving a
truncated datagram. Answers to requests that are malformed or not authenticated stay under
SMALL_ANSWER_BYTES, so a spoofed source address cannot turn the server into an amplifier.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from ..envelope import Envelopes, dumps
from .price import ENDPOINT, PriceRequest, answer_price

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 2048
MAX_ANSWER_BYTES = 4096  # the buffer the documented client reads with
SMALL_ANSWER_BYTES = 512  # ceiling for answers to unauthenticated or malformed datagrams
FIELDS = ("asset", "api_key", "aggregate", "max_age_ms")


class BadDatagram(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_datagram(data: bytes) -> PriceRequest:
    """A PriceRequest from one datagram, or BadDatagram saying what is wrong with it."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadDatagram(413, f"datagram of {len(data)} bytes is over the {MAX_REQUEST_BYTES}-byte limit")
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadDatagram(400, "malformed JSON: send {\"asset\": \"BTC\", \"api_key\": \"KEY\"}") from None
    if not isinstance(msg, dict):
        raise BadDatagram(400, "expected a JSON object: {\"asset\": \"BTC\", \"api_key\": \"KEY\"}")
    unknown = [str(k)[:20] for k in msg if k not in FIELDS]
    if unknown:
        raise BadDatagram(400, f"unknown field(s) {', '.join(unknown[:3])}: allowed are {', '.join(FIELDS)}")
    key = msg.get("api_key")
    if key is not None and not isinstance(key, str):
        raise BadDatagram(401, "api_key must be a string")
    asset = msg.get("asset")
    if isinstance(asset, str):
        assets = [asset]
    elif isinstance(asset, list) and all(isinstance(a, str) for a in asset):
        assets = asset
    elif asset is None:
        assets = []
    else:
        raise BadDatagram(400, "asset must be a string (\"BTC\" or \"BTC,ETH\") or a list of strings")
    options: dict[str, str | None] = {}
    for name in ("aggregate", "max_age_ms"):
        value = msg.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise BadDatagram(400, f"{name} must be a string or a whole number")
        options[name] = None if value is None else str(value)
    return PriceRequest(key, assets, "udp", **options)


class UdpPriceServer(asyncio.DatagramProtocol):
    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.envelopes: Envelopes = rt.envelopes("LPO")
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        self.refused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a gone client
        log.debug("UDP error: %s", exc)

    async def _answer(self, data: bytes, addr: Any) -> None:
        try:
            payload = await self.answer(data)
        except Exception:  # one bad datagram never stops the server
            log.exception("UDP request failed")
            payload = dumps(self.envelopes.error(ENDPOINT, 500, "internal error; the failure was logged"))[:SMALL_ANSWER_BYTES]
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(payload, addr)

    async def answer(self, data: bytes) -> bytes:
        try:
            request = parse_datagram(data)
        except BadDatagram as exc:
            self.refused += 1
            return self._small(exc.status, str(exc))
        answer = await answer_price(self.rt, request, self.envelopes)
        if answer.key is None:  # not authenticated: small answers only
            self.refused += 1
            return self._small(answer.status, answer.body["error"] or "unauthorized")
        payload = dumps(answer.body)
        if len(payload) > MAX_ANSWER_BYTES:
            message = (
                f"the answer would be {len(payload)} bytes, over the {MAX_ANSWER_BYTES}-byte datagram limit: "
                f"ask for fewer assets per datagram, or use HTTP /price"
            )
            payload = dumps(self.envelopes.error(ENDPOINT, 413, message, api_key_id=answer.key.id))
        self.answered += 1
        return payload

    def _small(self, status: int, message: str) -> bytes:
        payload = dumps(self.envelopes.error(ENDPOINT, status, message))
        if len(payload) > SMALL_ANSWER_BYTES:  # never amplify: shorten the reason, keep the envelope valid
            payload = dumps(self.envelopes.error(ENDPOINT, status, "bad request"))
        return payload

    def stats(self) -> dict[str, int]:
        return {"answered": self.answered, "refused": self.refused}
