"""The WebSocket fast path writes RFC 6455 text-frame headers itself: each length form (7-bit,
16-bit, 64-bit) is checked here."""

from __future__ import annotations


def test_text_frame_headers_follow_rfc6455() -> None:
    from trinity_beast.transports.ws.frames import text_frame_header

    assert text_frame_header(125) == b"\x81\x7d"
    assert text_frame_header(126) == b"\x81\x7e\x00\x7e"
    assert text_frame_header(65535) == b"\x81\x7e\xff\xff"
    assert text_frame_header(65536) == b"\x81\x7f" + (65536).to_bytes(8, "big")


def test_a_repeated_asset_is_one_subscription_and_a_frame_carries_bounded_names() -> None:
    from trinity_beast.transports.ws.frames import MAX_REQUEST_ITEMS, MAX_SUBSCRIPTIONS, BadFrame, parse_assets

    assert parse_assets(",".join(["BTC"] * 100), "subscribe") == ["BTC"]  # one asset, not 100 subscriptions
    assert parse_assets(["btc", "BTC", "eth"], "subscribe") == ["BTC", "ETH"]
    too_many = parse_assets([f"A{i}" for i in range(MAX_SUBSCRIPTIONS + 1)], "subscribe")
    assert isinstance(too_many, BadFrame) and "at most 50" in too_many.error
    flood = parse_assets(["BTC"] * (MAX_REQUEST_ITEMS + 1), "subscribe")
    assert isinstance(flood, BadFrame) and "in one message" in flood.error
