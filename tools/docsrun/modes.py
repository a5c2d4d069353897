"""The `/price` asset entry in each mode a client can meet — single source, median, stale —
against the page's field table, whose second column says in which mode each field appears
(`always`, `median`, `stale`, or `sometimes` for what depends on the exchange, such as a
converted USDT price)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from docsrun.blocks import Block, backticked
from docsrun.live import Context

ASSET = "BTC"


def price(ctx: Context, query: str) -> dict[str, Any]:
    r = httpx.get(f"{ctx.server.url}/price?asset={ASSET}{query}&api_key={ctx.server.key}", timeout=60)
    r.raise_for_status()
    return r.json()["data"]["assets"][0]


def control(ctx: Context, *actions: dict[str, Any]) -> None:
    """Actions on the simulator `beast serve --sim` runs (its own control route)."""
    for action in actions:
        r = httpx.post(f"http://127.0.0.1:{ctx.server.sim_port}/_control", json=action, timeout=10)
        r.raise_for_status()


def exchanges_down(ctx: Context) -> None:
    """Every simulated exchange refuses (feeds and REST) and its open feeds are closed."""
    from trinity_beast.domain.settings import EXCHANGES

    for exchange in EXCHANGES:
        control(
            ctx, {"action": "set_mode", "exchange": exchange, "mode": "down"}, {"action": "drop", "exchange": exchange}
        )


def stale_entry(ctx: Context, deadline_s: float) -> dict[str, Any]:
    """With every exchange down (feeds and REST), wait until the held price is served stale."""
    exchanges_down(ctx)
    try:
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            entry = price(ctx, "")
            if entry.get("stale"):
                return entry
            time.sleep(0.5)
        raise TimeoutError(f"no stale answer within {deadline_s:g} s")
    finally:
        control(ctx, {"action": "reset"})


def entries(ctx: Context, stale_after_s: float) -> dict[str, dict[str, Any]]:
    median = price(ctx, "&aggregate=median")
    deadline = time.time() + 30
    while "sources" not in median and time.time() < deadline:  # fresh sources are a moment away at start
        time.sleep(0.5)
        median = price(ctx, "&aggregate=median")
    return {"single": price(ctx, ""), "median": median, "stale": stale_entry(ctx, stale_after_s * 3 + 30)}


def check_price_fields(block: Block, ctx: Context, stale_after_s: float) -> list[str]:
    modes: dict[str, str] = {}
    for row in block.rows:
        for name in backticked(row[0]):
            modes[name] = row[1].strip().lower()
    unknown = {m for m in modes.values() if m not in ("always", "median", "stale", "sometimes")}
    if unknown:
        return [f"column 2 must be always, median, stale or sometimes, not {sorted(unknown)}"]
    problems = []
    for mode, entry in entries(ctx, stale_after_s).items():
        undocumented = [k for k in entry if k not in modes]
        if undocumented:
            problems.append(f"{mode} answer: fields not in the table: {', '.join(undocumented)}")
        expected = [k for k, m in modes.items() if m == "always" or m == mode]
        missing = [k for k in expected if k not in entry]
        if missing:
            problems.append(f"{mode} answer: documented fields missing: {', '.join(missing)}")
        misplaced = [k for k in entry if modes.get(k) in ("median", "stale") and modes[k] != mode]
        if misplaced:
            problems.append(f"{mode} answer: carries {', '.join(misplaced)}, documented for another mode")
    return problems
