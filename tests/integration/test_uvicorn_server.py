"""What transports/server.py relies on in uvicorn, checked on the pinned uvicorn.

QuietServer overrides `uvicorn.Server.capture_signals` so that one process runs several
servers under one signal handler (run_until_signal); if uvicorn stopped calling it, every
server would install its own SIGINT/SIGTERM handlers again. make_server passes the limits of
docs/architecture.md as Config settings, which uvicorn must still accept. Each check fails
naming the pinned uvicorn version and what changed (tests/uvicorn_pin.py).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
import time
from typing import Any

import uvicorn

from trinity_beast.transports.server import (
    KEEP_ALIVE_S,
    QuietServer,
    bind_tcp,
    make_server,
)
from trinity_beast.transports.ws.frames import MAX_FRAME_BYTES
from uvicorn_pin import require

MODULE = "transports/server.py"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    pass


def test_make_server_settings_are_the_ones_uvicorn_uses() -> None:
    server = make_server(app, "warning")
    config = server.config
    config.load()
    for name, expected in (
        ("timeout_keep_alive", KEEP_ALIVE_S),
        ("ws_max_size", MAX_FRAME_BYTES),
        ("ws_per_message_deflate", False),
        ("server_header", False),
        ("date_header", False),
    ):
        require(
            getattr(config, name, None) == expected,
            MODULE,
            f"uvicorn.Config({name}=...) being kept as given",
            f"config.{name} is {getattr(config, name, 'missing')!r}",
        )
    require(isinstance(server, uvicorn.Server), MODULE, "QuietServer being a uvicorn.Server", f"it is {type(server)!r}")


async def test_a_quiet_server_leaves_the_process_signal_handlers_alone() -> None:
    theirs = getattr(uvicorn.Server, "capture_signals", None)
    require(
        callable(theirs) and list(inspect.signature(theirs).parameters) == ["self"],
        MODULE,
        "uvicorn.Server.capture_signals(self), a context manager around serve()",
        f"it is {theirs!r}",
    )
    assert threading.current_thread() is threading.main_thread()  # uvicorn only installs handlers there
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    sock = bind_tcp("127.0.0.1", 0, "test")
    server = make_server(app, "warning")
    assert isinstance(server, QuietServer)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        during = {sig: signal.getsignal(sig) for sig in before}
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
    require(
        during == before,
        MODULE,
        "Server.serve installing signal handlers only through capture_signals()",
        f"serving replaced them: {during!r} instead of {before!r}",
    )
