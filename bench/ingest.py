"""Ingest speed: exchange messages -> connector parse -> price book, against orjson.loads alone.

Messages are the simulator's own frames for every exchange (the real protocols), one
instrument per message as the exchanges mostly send them. Prints JSON with messages per
second for both paths and their ratio; `--profile` prints where the time goes.
"""

from __future__ import annotations

import json
import sys
import time

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
    return {
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
