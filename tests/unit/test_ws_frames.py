"""The WebSocket fast path writes RFC 6455 text-frame headers itself: each length form (7-bit,
16-bit, 64-bit) is checked here."""

from __future__ import annotations


def test_text_frame_headers_follow_rfc6455() -> None:
    from trinity_beast.transports.ws.frames import text_frame_header

    assert text_frame_header(125) == b"\x81\x7d"
    assert text_frame_header(126) == b"\x81\x7e\x00\x7e"
    assert text_frame_header(65535) == b"\x81\x7e\xff\xff"
    assert text_frame_header(65536) == b"\x81\x7f" + (65536).to_bytes(8, "big")
