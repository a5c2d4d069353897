"""What travels over /ws/prices: the frames we send and the client frames we accept.

Kept apart from the hub so the wire format (envelopes as bytes, a price update serialized
once and split around the caller's key id, the RFC 6455 header of a ready frame) and the
rules for a client's frame (JSON object, one action, 1..MAX_SUBSCRIPTIONS well-formed
assets) can be read and tested without a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from trinity_beast.domain.envelope import Envelopes, unix_ms, unix_seconds
from trinity_beast.domain.text import asset_symbol
from trinity_beast.domain.tick import Tick

ENDPOINT = "/ws/prices"
MAX_SUBSCRIPTIONS = 50  # assets per connection
MAX_REQUEST_ITEMS = 1_000  # names one subscribe/unsubscribe may carry (repeats included)
MAX_FRAME_BYTES = 64 * 1024  # larger client frames close the connection with 1009 (server setting)
PONG = b'{"type":"pong"}'
_KEY_SLOT = "\x00key\x00"
_ASSET_ACTIONS: tuple[Literal["subscribe", "unsubscribe"], ...] = ("subscribe", "unsubscribe")


def text_frame_header(length: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame (server to client) of `length` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


class Messages:
    """The envelopes of /ws/prices as the bytes a client receives."""

    def __init__(self, envelopes: Envelopes) -> None:
        self.envelopes = envelopes

    def reply(self, key_id: str, status: int, data: Any = None, error: str | None = None) -> bytes:
        return orjson.dumps(self.envelopes.build(ENDPOINT, status, data=data, error=error, api_key_id=key_id))

    def price_parts(self, tick: Tick) -> tuple[bytes, bytes]:
        """The update serialized once, split around the caller's key id.

        The seed's four fields (type, asset, price, source), then ours: the exchange's time
        as /price gives it (`timestamp` whole Unix seconds, `timestamp_ms`)."""
        data: dict[str, Any] = {
            "type": "price",
            "asset": tick.asset,
            "price": float(tick.price),
            "source": tick.label,
            "timestamp": unix_seconds(tick.exchange_ts),
            "timestamp_ms": unix_ms(tick.exchange_ts),
        }
        if tick.usd_rate is not None:
            data["converted_from"] = {"quote": tick.quote, "usd_rate": float(tick.usd_rate)}
        raw = orjson.dumps(self.envelopes.build(ENDPOINT, 200, data=data, api_key_id=_KEY_SLOT))
        head, _, tail = raw.partition(orjson.dumps(_KEY_SLOT))
        return head, tail

    def subscribed(self, key_id: str, assets: list[str], removed: list[str] | None = None) -> bytes:
        """The seed's `{"type": "subscribed", "assets": [...]}`; after an unsubscribe, plus what it removed."""
        data: dict[str, Any] = {"type": "subscribed", "assets": assets}
        if removed is not None:
            data["unsubscribed"] = removed
        return self.reply(key_id, 200, data)


@dataclass(frozen=True)
class Request:
    """A well-formed client frame: ping, or (un)subscribe with its assets (upper-cased, deduplicated)."""

    action: Literal["subscribe", "unsubscribe", "ping"]
    assets: list[str]


@dataclass(frozen=True)
class BadFrame:
    """A client frame we cannot act on; `error` is the 400 reply's message."""

    error: str


def parse_frame(frame: str | bytes) -> Request | BadFrame:
    """One client frame: subscribe, unsubscribe or ping; anything else says what was expected."""
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return BadFrame(f"malformed JSON: {str(exc).split(':')[0]}")
    if not isinstance(msg, dict):
        return BadFrame('expected a JSON object such as {"subscribe": ["BTC"]}')
    for action in _ASSET_ACTIONS:  # subscribe wins over unsubscribe in one frame
        if action in msg:
            assets = parse_assets(msg[action], action)
            return assets if isinstance(assets, BadFrame) else Request(action, assets)
    if "ping" in msg:
        return Request("ping", [])
    shown = ", ".join(list(msg)[:3])[:60] or "none"
    return BadFrame(f"unknown action ({shown}): expected subscribe, unsubscribe or ping")


def parse_assets(raw: Any, action: str) -> list[str] | BadFrame:
    """A list (or comma-separated string) of at most MAX_SUBSCRIPTIONS well-formed assets."""
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        return BadFrame(f'{action}: expected a list of assets, e.g. {{"{action}": ["BTC", "ETH"]}}')
    if len(raw) > MAX_REQUEST_ITEMS:  # bounded work per frame, before any parsing
        return BadFrame(f"too many assets in one message: at most {MAX_REQUEST_ITEMS}")
    assets: list[str] = []
    for item in raw:
        asset = asset_symbol(item)
        if asset is None:
            return BadFrame(f"malformed asset {item[:20]!r}: an asset is 1-15 letters or digits")
        if asset not in assets:
            assets.append(asset)
    if len(assets) > MAX_SUBSCRIPTIONS:  # distinct assets: a name repeated is one subscription
        return BadFrame(f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} assets per connection")
    return assets
