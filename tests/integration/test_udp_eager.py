"""UDP answers that need no I/O complete inside datagram_received on Python 3.12+ (eager tasks).

On 3.11 every datagram is scheduled as a task; on 3.12+ transports/udp/datagram.py starts it
eagerly, so a price from the in-process book is answered before datagram_received returns and
no task is kept. An answer that does wait (the cache, the REST fallback) still gets its task
and still arrives. Checked over a real UDP socket on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from trinity_beast.transports.udp.datagram import EAGER_TASK_FACTORY, DatagramServer, Reply


class Watched(DatagramServer):
    """Notes whether each answer ran inside datagram_received, and how many tasks were kept."""

    def __init__(self, wait: bool) -> None:
        self.inside = False
        self.ran_inside: list[bool] = []
        self.kept: list[int] = []
        self.wait = wait
        super().__init__(self.answer_one, b"{}")

    async def answer_one(self, data: bytes) -> Reply:
        self.ran_inside.append(self.inside)
        if self.wait:
            await asyncio.sleep(0.01)  # an answer that needs I/O
        return Reply(200, b"echo:" + data, trusted=True)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inside = True
        try:
            super().datagram_received(data, addr)
        finally:
            self.inside = False
        self.kept.append(len(self._tasks))


async def exchange(wait: bool, count: int = 20) -> Watched:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(lambda: Watched(wait), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    client.connect(("127.0.0.1", port))
    try:
        for i in range(count):
            await loop.sock_sendall(client, b"%d" % i)
            answer = await asyncio.wait_for(loop.sock_recv(client, 100), 30)
            assert answer == b"echo:%d" % i
    finally:
        client.close()
        transport.close()
    return server


def test_the_eager_task_factory_is_used_exactly_when_python_has_it() -> None:
    assert (EAGER_TASK_FACTORY is not None) == (sys.version_info >= (3, 12))


async def test_an_answer_without_io_completes_inside_datagram_received_on_312() -> None:
    server = await exchange(wait=False)
    if sys.version_info >= (3, 12):
        assert all(server.ran_inside) and server.kept == [0] * 20
    else:
        assert not any(server.ran_inside)


async def test_an_answer_that_waits_still_gets_its_task_and_arrives() -> None:
    server = await exchange(wait=True)
    assert server.ran_inside == [sys.version_info >= (3, 12)] * 20
    assert all(kept == 1 for kept in server.kept)  # the one in flight, kept until it finishes
    assert server.answered == 20
