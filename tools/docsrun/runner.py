"""Runs every tagged example of the pages, each against the stacks its tag names."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from docsrun import live, modes, syntax
from docsrun.blocks import Block, documents, extract
from docsrun.live import Context
from docsrun.servers import Server, start_documented, start_embedded

STALE_AFTER_S = 10.0  # the runner's server: a price goes stale quickly enough to show the stale mode

LIVE: dict[str, Callable[[Block, Context], list[str]]] = {
    "sh": live.run_sh,
    "python": live.run_python,
    "expect": live.check_expect,
    "first-start": live.check_first_start,
    "output": live.check_output,
    "udp-sizes": live.check_udp_sizes,
    "fields": live.check_fields,
    "price-fields": lambda block, ctx: modes.check_price_fields(block, ctx, STALE_AFTER_S),
}
OFFLINE = {"none", "syntax", "serve"}


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def record(self, block: Block, stack: str, problems: list[str]) -> None:
        label = f"{block.where} [{block.kind}{'' if block.kind in OFFLINE else ' on ' + stack}]"
        self.checked.append(label)
        self.failures += [f"{label}: {p}" for p in problems]


def _check(run: Callable[[Block, Context], list[str]], block: Block, ctx: Context | None = None) -> list[str]:
    try:
        return run(block, ctx)  # type: ignore[arg-type]
    except Exception as exc:  # a crash in a check is a failure of that example, with its cause
        return [f"{type(exc).__name__}: {exc} ({traceback.format_exc().strip().splitlines()[-2].strip()})"]


def run_stack(stack: str, blocks: list[Block], server: Server, report: Report) -> None:
    ctx = Context(server)
    # The stale mode takes every exchange down for a while: check it after everything else.
    ordered = [b for b in blocks if b.kind != "price-fields"] + [b for b in blocks if b.kind == "price-fields"]
    for block in ordered:
        if stack in block.stacks() and block.kind in LIVE:
            report.record(block, stack, _check(LIVE[block.kind], block, ctx))


def run_all(pages: list[Path] | None = None) -> Report:
    report = Report()
    blocks: list[Block] = []
    for page in pages or documents():
        found, problems = extract(page)
        blocks += found
        report.failures += problems
    for block in blocks:
        if block.kind not in LIVE and block.kind not in OFFLINE:
            report.failures.append(
                f"{block.where}: unknown run: kind {block.kind!r} (one of {sorted(LIVE) + sorted(OFFLINE)})"
            )
        elif block.kind == "none" and not block.options.get("why"):
            report.failures.append(f'{block.where}: run: none needs why="…" (why it cannot run or be checked)')
        elif block.kind == "syntax":
            report.record(block, "", _check(lambda b, _: syntax.check_block(b.text), block))
        elif block.kind == "none":
            report.record(block, "", [])
    if any("embedded" in b.stacks() and b.kind in LIVE for b in blocks):
        server = start_embedded({"BEAST_STALE_AFTER_S": str(STALE_AFTER_S)})
        try:
            run_stack("embedded", blocks, server, report)
        finally:
            server.stop()
    for block in (b for b in blocks if b.kind == "serve"):
        stack = block.options.get("stack", "production")
        server = start_documented(block.text.strip(), stack)
        try:
            report.record(block, stack, [])
            run_stack(stack, blocks, server, report)
        finally:
            server.stop()
    return report
