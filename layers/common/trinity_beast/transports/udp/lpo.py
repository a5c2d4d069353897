"""UDP price requests on the LPO UDP port: one JSON datagram in, one envelope out.

`{"asset": "BTC", "api_key": "KEY"}` (also `"BTC,ETH"` or a list) gets the same envelope as
HTTP `/price`, from the same `PriceDesk.answer`. Size rules (one datagram per answer, small
answers to unknown senders) are in `transports.udp.datagram`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_beast.services.prices.answer import DATAGRAM_ADVICE, ENDPOINT, PriceRequest
from trinity_beast.transports.udp.datagram import (
    MAX_ANSWER_BYTES,
    SMALL_ANSWER_BYTES,
    BadDatagram,
    DatagramServer,
    Reply,
    decode_object,
    fit,
    small_error,
    stranger_error,
)

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

__all__ = ["SMALL_ANSWER_BYTES", "UdpPriceServer", "parse_datagram"]

FIELDS = ("asset", "api_key", "aggregate", "max_age_ms")
EXAMPLE = '{"asset": "BTC", "api_key": "KEY"}'


def parse_datagram(data: bytes) -> PriceRequest:
    """A PriceRequest from one datagram, or BadDatagram saying what is wrong with it."""
    msg = decode_object(data, FIELDS, EXAMPLE)
    asset = msg.get("asset")
    if isinstance(asset, str):
        assets = [asset]
    elif isinstance(asset, list) and all(isinstance(a, str) for a in asset):
        assets = asset
    elif asset is None:
        assets = []
    else:
        raise BadDatagram(400, 'asset must be a string ("BTC" or "BTC,ETH") or a list of strings')
    options: dict[str, str | None] = {}
    for name in ("aggregate", "max_age_ms"):
        value = msg.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise BadDatagram(400, f"{name} must be a string or a whole number")
        options[name] = None if value is None else str(value)
    # An answer over one datagram is refused by the desk before it is billed (a 413 costs nothing).
    return PriceRequest(
        msg.get("api_key"),
        assets,
        "udp",
        aggregate=options["aggregate"],
        max_age_ms=options["max_age_ms"],
        max_datagram_bytes=MAX_ANSWER_BYTES,
    )


class UdpPriceServer(DatagramServer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.envelopes = rt.envelopes("LPO")
        self.refused = 0
        super().__init__(
            self.answer,
            small_error(self.envelopes, ENDPOINT, 500, "internal error; the failure was logged"),
            observe=lambda status, seconds: rt.metrics.observe("LPO", ENDPOINT, "udp", status, seconds),
            amplification=rt.settings.udp_amplification_factor,
        )

    async def answer(self, data: bytes) -> Reply:
        try:
            request = parse_datagram(data)
        except BadDatagram as exc:
            self.refused += 1
            return stranger_error(self.envelopes, ENDPOINT, exc.status, str(exc), self.budget(data))
        answer = await self.rt.prices.answer(request, self.envelopes)
        if answer.key is None:  # not authenticated: small answers only, and only when they fit the rule
            self.refused += 1
            return stranger_error(
                self.envelopes, ENDPOINT, answer.status, answer.error or "unauthorized", self.budget(data)
            )
        return fit(self.envelopes, ENDPOINT, answer.status, answer.encoded(), answer.key.id, DATAGRAM_ADVICE)

    def stats(self) -> dict[str, int]:
        return {"answered": self.answered, "refused": self.refused}
