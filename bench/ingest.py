"""Ingest speed: exchange messages -> connector parse -> price book, per core, against the exchanges' peak.

Messages are the simulator's own frames for every exchange (the real protocols), one
instrument per message as the exchanges mostly send them. The goal is headroom over what
the six exchanges send at most for the 150 registry assets: every instrument of every
exchange updated once per simulator push interval (`PEAK_INTERVAL_S`, the simulator's
default, as fast as the ticker channels we subscribe to push), counted from the registry.
The recorded samples in shared/exchange-samples are single messages (sizes and shapes, no
rates): `recorded_frame_bytes` compares their ticker updates' sizes with the frames parsed here.
Prints JSON with messages per second (and orjson.loads alone, for the record); `--profile`
prints where the time goes.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from pathlib import Path

import orjson

from beast_sim import PROTOCOLS, SimSession, Simulator
from trinity_beast.domain.assets import load_registry
from trinity_beast.domain.book import PriceBook
from trinity_beast.exchanges import CONNECTORS


def messages(per_exchange: int) -> list[tuple[str, str]]:
    """(exchange, frame) pairs: price updates as each exchange sends them."""
    sim = Simulator(seed=1)
    registry = load_registry()
    out: list[tuple[str, str]] = []
    for exchange, proto in PROTOCOLS.items():
        session = SimSession(exchange, sim)
        for inst in registry.instruments_for(exchange)[:50]:
            session.subscribed[inst.symbol] = sim.instrument(exchange, inst.symbol) or inst
        symbols = list(session.subscribed)
        frames: list[str] = []
        while len(frames) < per_exchange:
            sim.prices.step()
            for symbol in symbols:
                frames.extend(f for f in proto.updates(session, [symbol]) if isinstance(f, str))
        out.extend((exchange, f) for f in frames[:per_exchange])
    return out


# beast_sim's push interval: one ticker update per subscribed instrument per interval.
PEAK_INTERVAL_S: float = inspect.signature(Simulator).parameters["push_interval_s"].default
SAMPLES = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[2] / "shared" / "exchange-samples",
            Path("/work/shared/exchange-samples"),
        )
        if p.is_dir()
    ),
    Path("/nonexistent"),
)


def recorded_frame_bytes() -> int | None:
    """Mean size of the recorded ticker/trade updates, when the samples are there."""
    files = sorted(SAMPLES.glob("*_update.json")) if SAMPLES.is_dir() else []
    return round(sum(len(f.read_bytes()) for f in files) / len(files)) if files else None


def run(per_exchange: int, rounds: int = 3) -> dict:
    registry = load_registry()
    frames = messages(per_exchange)
    states = {}
    for exchange, connector in CONNECTORS.items():
        symbols = {i.symbol: (i.asset, i.quote) for i in registry.instruments_for(exchange)}
        states[exchange] = connector.new_state(symbols)
    published = []
    book = PriceBook(published.append, tuple(CONNECTORS), 30.0, time.time)
    # Give the book live stablecoin rates, as it has them in service.
    for exchange, frame in frames:
        for tick in CONNECTORS[exchange].parse(frame, time.time(), states[exchange]).ticks:
            book.ingest(tick)

    raw = [f for _, f in frames]
    best_loads = best_ingest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for f in raw:
            orjson.loads(f)
        best_loads = min(best_loads, time.perf_counter() - started)

        published.clear()
        started = time.perf_counter()
        for exchange, f in frames:
            now = time.time()
            for tick in CONNECTORS[exchange].parse(f, now, states[exchange]).ticks:
                book.ingest(tick)
        best_ingest = min(best_ingest, time.perf_counter() - started)
    n = len(frames)
    instruments = sum(len(registry.instruments_for(exchange)) for exchange in CONNECTORS)
    return {
        "peak_per_s": round(instruments / PEAK_INTERVAL_S),
        "peak_how": f"{instruments} instruments over {len(CONNECTORS)} exchanges, one update each per"
        f" {PEAK_INTERVAL_S:g} s (the simulator's push interval)",
        "frame_bytes": round(sum(len(f) for _, f in frames) / n),
        "recorded_frame_bytes": recorded_frame_bytes(),
        "messages": n,
        "ticks_published": len(published),
        "loads_per_s": round(n / best_loads),
        "ingest_per_s": round(n / best_ingest),
        "ratio": round(best_loads / best_ingest, 3),
    }


if __name__ == "__main__":
    per_exchange = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2000
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        cProfile.run("run(per_exchange, rounds=1)", "/tmp/ingest.prof")
        pstats.Stats("/tmp/ingest.prof").sort_stats("tottime").print_stats(15)
    else:
        print(json.dumps(run(per_exchange)))
