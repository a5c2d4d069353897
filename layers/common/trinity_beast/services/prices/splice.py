"""Prebuilt price answers: the bytes for one asset list built once per tick, per-request fields spliced in.

Most `/price` requests ask again for the same few assets between two ticks. For those, the
answer is the same bytes but for a handful of fields: the envelope's key id and timestamp,
each entry's age and latency, the answer's duration and the key's usage. So the first
request after a tick builds the whole answer with the very functions the full path uses
(`asset_entry`, the data shape, `Envelopes.build`), each of those fields replaced by a
numbered mark, serializes it once and cuts it at the marks; later requests serialize only
the fields and join. Which fields change per request is said by the same modules that format
them (`Envelopes.per_request`, `entry_timing`, `data_timing` in answer.py), so a change of
field format there reaches both paths.

Usage fields are spliced, so one template serves every key tier. A template is used only
while every asset's served price is the tick it was built from: any newer tick for one of
its assets (the live book's listener), or the served tick reaching the staleness limit,
sends the next request down the full path, which builds a new one. Requests with
`aggregate=median` or `max_age_ms`, and any answer that is not a plain 200 from fresh
prices, always take the full path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from trinity_beast.domain.book import pick
from trinity_beast.domain.envelope import Envelopes
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import Quota

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings
    from trinity_beast.services.prices.live import LivePrices

MAX_TEMPLATES = 1024  # asset lists remembered; past this the memory starts over
_ENVELOPE, _DATA = -2, -1  # where a spliced field lives (entries are numbered from 0)
_MARK = re.compile(rb'"\\u0000(\d+)\\u0000"')  # a mark "\x00N\x00" as orjson writes it

Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Shapes:
    """How the full path shapes an answer (services/prices/answer.py): reused, never copied."""

    entry: Callable[[Tick, float, float], Fields]  # asset_entry(tick, now, latency_s)
    entry_timing: Callable[[Tick, float, float], Fields]  # its per-request fields
    data: Callable[[list[Fields], list[Fields], Fields], Fields]  # price_data(entries, failed, timing)
    data_timing: Callable[[float, Quota], Fields]  # data_timing(started, quota)
    endpoint: str


@dataclass(frozen=True, slots=True)
class Template:
    ticks: tuple[Tick, ...]
    generations: tuple[int, ...]
    expires: float  # time.time() at which the oldest served tick turns stale
    parts: tuple[bytes, ...]  # the fixed bytes, one more than the slots
    slots: tuple[tuple[int, str], ...]  # (where, field) of each spliced value, in order


class Prebuilt:
    """Templates per (envelope service, asset list), kept current by the live book's updates."""

    def __init__(self, live: LivePrices, settings: Settings, shapes: Shapes) -> None:
        self._live = live
        self._settings = settings
        self._shapes = shapes
        self._generation: dict[str, int] = {}
        self._templates: dict[tuple[Envelopes, tuple[str, ...]], Template] = {}
        self.built = 0  # templates made (tests and the bench read it)
        live.on_update(self._changed)

    def _changed(self, tick: Tick) -> None:
        self._generation[tick.asset] = self._generation.get(tick.asset, 0) + 1

    def payload(
        self, envelopes: Envelopes, assets: tuple[str, ...], key_id: str, quota: Quota, started: float
    ) -> bytes | None:
        """The answer's bytes if every asset has a fresh served price, else None (take the full path)."""
        now = time.time()
        template = self._templates.get((envelopes, assets))
        if template is None or now >= template.expires or not self._current(assets, template.generations):
            template = self._build(envelopes, assets, now)
            if template is None:
                return None
        shapes = self._shapes
        values: dict[int, Fields] = {_ENVELOPE: envelopes.per_request(key_id)}
        latency = time.perf_counter() - started
        for i, tick in enumerate(template.ticks):
            values[i] = shapes.entry_timing(tick, now, latency)
        values[_DATA] = shapes.data_timing(started, quota)
        dumps = orjson.dumps
        parts = template.parts
        out = [parts[0]]
        for n, (where, field) in enumerate(template.slots, 1):
            out.append(dumps(values[where][field]))
            out.append(parts[n])
        return b"".join(out)

    def _current(self, assets: tuple[str, ...], generations: tuple[int, ...]) -> bool:
        held = self._generation
        if len(assets) == 1:
            return held.get(assets[0], 0) == generations[0]
        return all(held.get(a, 0) == g for a, g in zip(assets, generations, strict=True))

    def _build(self, envelopes: Envelopes, assets: tuple[str, ...], now: float) -> Template | None:
        s, shapes = self._settings, self._shapes
        generations = tuple(self._generation.get(a, 0) for a in assets)
        ticks: list[Tick] = []
        for asset in assets:
            tick, fresh = pick(self._live.get(asset), s.exchange_priority, now, s.stale_after_s)
            if tick is None or not fresh:
                return None
            ticks.append(tick)
        slots: list[tuple[int, str]] = []

        def mark(where: int, field: str) -> str:
            slots.append((where, field))
            return f"\x00{len(slots) - 1}\x00"

        entries = []
        for i, tick in enumerate(ticks):
            entry = shapes.entry(tick, now, 0.0)
            for field in shapes.entry_timing(tick, now, 0.0):
                entry[field] = mark(i, field)
            entries.append(entry)
        timing = {field: mark(_DATA, field) for field in shapes.data_timing(time.perf_counter(), Quota(0, 0, 0))}
        body = envelopes.build(shapes.endpoint, 200, data=shapes.data(entries, [], timing))
        for field in envelopes.per_request(None):
            body[field] = mark(_ENVELOPE, field)
        pieces = _MARK.split(orjson.dumps(body))
        order = [int(n) for n in pieces[1::2]]  # the marks in the order they were written
        template = Template(
            tuple(ticks),
            generations,
            min(t.received_ts for t in ticks) + s.stale_after_s,
            tuple(pieces[0::2]),
            tuple(slots[n] for n in order),
        )
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        self._templates[(envelopes, assets)] = template
        self.built += 1
        return template
