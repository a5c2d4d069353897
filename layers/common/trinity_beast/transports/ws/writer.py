"""The per-client writer: sends a client's queued replies and updates at the pace it reads.

One task per connection drains the client's queues through the ASGI `send`, reserves one unit
of a limited key's month before each update (Meter.reserve: exact across processes; a push
beyond the limit ends the feed with a 429 and 1008, an unsent one is released),
and drops a client that accepts nothing for `slow_client_s` with a reason, so one stuck
reader costs a bounded queue and never holds up the fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from trinity_beast.domain.envelope import utc_iso
from trinity_beast.transports.ws.client import Client
from trinity_beast.transports.ws.frames import Messages
from trinity_beast.transports.ws.metering import Deliveries

log = logging.getLogger(__name__)

SLOW_CLIENT_S = 10.0  # a client that accepts nothing for this long is dropped
CLOSE_SEND_S = 1.0  # the longest our close frame may take to go out


class Writer:
    def __init__(self, deliveries: Deliveries, messages: Messages) -> None:
        self.deliveries = deliveries
        self.messages = messages
        self.slow_client_s = SLOW_CLIENT_S
        self.dropped_slow = 0

    async def run(self, client: Client) -> None:
        """Send until the client is closed (by us or by a failed send); returns after the close frame."""
        meter = self.deliveries.meter
        limit = 0 if client.key.unlimited else client.key.monthly_limit
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.control or client.prices:
                    if client.closing is not None:
                        break
                    if client.control:
                        await asyncio.wait_for(_send(client, client.control.popleft()), self.slow_client_s)
                        continue
                    asset, head, tail, published = client.prices.popleft()
                    if limit:  # one unit reserved before the push (the billing rule, docs/usage.md)
                        grant = await meter.reserve(client.key.id, limit, 1)
                        if not grant.units:
                            if grant.offline and not grant.quota.exhausted:
                                client.close(1013, "usage store unreachable: reconnect shortly")
                                break
                            quota = grant.quota
                            error = f"monthly limit of {limit} prices reached; the limit resets at {utc_iso(quota.reset_at)}"
                            await _send(client, self.messages.reply(client.key.id, 429, None, error))
                            client.close(1008, "monthly limit reached")
                            break
                    try:
                        await asyncio.wait_for(_send(client, head + client.key_json + tail), self.slow_client_s)
                    except BaseException:
                        if limit:
                            await meter.release(client.key.id, 1)  # not delivered: not billed
                        raise
                    self.deliveries.one(client.key.id, asset, time.perf_counter() - published, billable=not limit)
                if client.closing is not None:
                    await _close(client, *client.closing)
                    return
        except TimeoutError:
            self.dropped_slow += 1
            log.info("dropping slow WebSocket client %s", client.key.id)
            client.closing = (1008, f"too slow: nothing read for {self.slow_client_s:g} s")
            await _close(client, *client.closing)
        except Exception:  # the peer went away mid-send
            client.closing = client.closing or (1006, "")


async def _close(client: Client, code: int, reason: str) -> None:
    """Send our close frame (at most CLOSE_SEND_S). The reader stops first: granian holds a close
    back while a receive is pending, and the client's close reply needs no reading here."""
    reader = client.reader
    if reader is not None and not reader.done():
        reader.cancel()
        await asyncio.wait((reader,), timeout=CLOSE_SEND_S)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.send({"type": "websocket.close", "code": code, "reason": reason}), CLOSE_SEND_S)


async def _send(client: Client, payload: bytes) -> None:
    await client.send({"type": "websocket.send", "text": payload.decode()})
