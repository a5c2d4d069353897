"""Prebuilt price answers: the bytes for one asset list built once per tick, per-request fields spliced in.

Most `/price` requests ask again for the same few assets between two ticks. Their answers are
the same bytes but for a handful of fields: the envelope's key id and timestamp, each entry's
age and latency, the answer's duration and the key's usage. So the first request after a tick
builds the whole answer with the functions the full path uses (shape.py, `Envelopes.build`),
with each of those fields replaced by a numbered mark, serializes it once and cuts it at the
marks; later requests serialize only those fields and join. Which fields change is said by
the functions that format them (`Envelopes.per_request`, `entry_timing`, `data_timing`), so a
change of format there reaches both paths.

A template is used only while every asset's served price is the tick it was built from: a
newer tick for one of its assets (the live book's listener) or the served tick turning stale
sends the next request down the full path's rules again. Requests with `aggregate=median` or
`max_age_ms`, and any answer that is not a 200 from fresh prices, never use one (answer.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from trinity_beast.domain.book import pick
from trinity_beast.domain.envelope import Envelopes
from trinity_beast.domain.tick import Tick
from trinity_beast.domain.usage import Quota
from trinity_beast.services.prices.shape import asset_entry, data_timing, entry_timing, price_data

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings
    from trinity_beast.services.prices.live import LivePrices

MAX_TEMPLATES = 1024  # asset lists remembered per process; past this the memory starts over
_ENVELOPE, _DATA = -2, -1  # where a spliced field lives (entries are numbered from 0)
_BLOCK = "\x00block\x00"  # the key standing for data_timing's fields, spliced as one run of `"k":v` pairs
# A mark "\x00N\x00" as orjson writes it, with the block key before it when it stands for the block.
_MARK = re.compile(rb'(?:"\\u0000block\\u0000":)?"\\u0000(\d+)\\u0000"')

Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Template:
    """One asset list's answer, cut where the per-request fields go."""

    ticks: tuple[Tick, ...]
    generations: tuple[int, ...]
    expires: float  # time.time() at which the oldest served tick turns stale
    parts: tuple[bytes, ...]  # the fixed bytes, one more than the slots
    slots: tuple[tuple[int, str | None], ...]  # (where, field) of each spliced value in the order written;
    # field None: all of `where`'s fields as `"k":v` pairs (data_timing, contiguous at the end of data)

    def render(self, envelopes: Envelopes, key_id: str, quota: Quota, now: float, started: float) -> bytes:
        """The answer's bytes for this request: `quota` is the key's usage including it."""
        latency = time.perf_counter() - started
        values: dict[int, Fields] = {i: entry_timing(tick, now, latency) for i, tick in enumerate(self.ticks)}
        values[_ENVELOPE] = envelopes.per_request(key_id)
        values[_DATA] = data_timing(time.perf_counter() - started, quota)
        dumps, parts = orjson.dumps, self.parts
        out = [parts[0]]
        for n, (where, field) in enumerate(self.slots, 1):
            out.append(dumps(values[where][field]) if field is not None else dumps(values[where])[1:-1])
            out.append(parts[n])
        return b"".join(out)

    def entries(self, now: float, started: float) -> list[Fields]:
        """The entries as the full path builds them (for an answer that serves only some of them)."""
        latency = time.perf_counter() - started
        return [asset_entry(tick, now, latency) for tick in self.ticks]


class Prebuilt:
    """Templates per (envelope service, asset list), kept current by the live book's updates."""

    def __init__(self, live: LivePrices, settings: Settings, endpoint: str) -> None:
        self._live = live
        self._settings = settings
        self._endpoint = endpoint
        self._generation: dict[str, int] = {}
        self._templates: dict[tuple[Envelopes, tuple[str, ...]], Template] = {}
        self.built = 0  # templates made (tests and the bench read it)
        live.on_update(self._changed)

    def _changed(self, tick: Tick) -> None:
        self._generation[tick.asset] = self._generation.get(tick.asset, 0) + 1

    def template(self, envelopes: Envelopes, assets: tuple[str, ...], now: float) -> Template | None:
        """The current template of `assets`, or None when one of them has no fresh price (full path)."""
        template = self._templates.get((envelopes, assets))
        if template is not None and now < template.expires and self._current(assets, template.generations):
            return template
        return self._build(envelopes, assets, now)

    def _current(self, assets: tuple[str, ...], generations: tuple[int, ...]) -> bool:
        held = self._generation
        if len(assets) == 1:
            return held.get(assets[0], 0) == generations[0]
        return all(held.get(a, 0) == g for a, g in zip(assets, generations, strict=True))

    def _build(self, envelopes: Envelopes, assets: tuple[str, ...], now: float) -> Template | None:
        settings = self._settings
        generations = tuple(self._generation.get(a, 0) for a in assets)
        ticks: list[Tick] = []
        for asset in assets:
            tick, fresh = pick(self._live.get(asset), settings.exchange_priority, now, settings.stale_after_s)
            if tick is None or not fresh:
                return None
            ticks.append(tick)
        slots: list[tuple[int, str | None]] = []

        def mark(where: int, field: str | None) -> str:
            slots.append((where, field))
            return f"\x00{len(slots) - 1}\x00"

        entries = []
        for i, tick in enumerate(ticks):
            entry = asset_entry(tick, now, 0.0)
            for field in entry_timing(tick, now, 0.0):
                entry[field] = mark(i, field)
            entries.append(entry)
        body = envelopes.build(self._endpoint, 200, data=price_data(entries, [], {_BLOCK: mark(_DATA, None)}))
        for field in envelopes.per_request(None):
            body[field] = mark(_ENVELOPE, field)
        pieces = _MARK.split(orjson.dumps(body))
        order = [int(n) for n in pieces[1::2]]  # the marks in the order they were written
        if sorted(order) != list(range(len(slots))):  # a mark lost or doubled: never splice wrongly
            return None
        template = Template(
            ticks=tuple(ticks),
            generations=generations,
            expires=min(t.received_ts for t in ticks) + settings.stale_after_s,
            parts=tuple(pieces[0::2]),
            slots=tuple(slots[n] for n in order),
        )
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        self._templates[(envelopes, assets)] = template
        self.built += 1
        return template
