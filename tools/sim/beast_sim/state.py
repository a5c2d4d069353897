"""What the simulator knows, apart from how it serves it: per-exchange misbehaviour, rejected
symbols, clock skews, prices, open sessions and counters.

The protocols and REST handlers read this state and the server drives it; keeping it free of
the web framework and of any one exchange lets all of them import it without a cycle.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from beast_sim.prices import PriceModel
from trinity_beast.domain.assets import AssetRegistry, Instrument, load_registry
from trinity_beast.domain.settings import EXCHANGES
from trinity_beast.exchanges import cryptocom

# normal: behave; drop: close every connection shortly after it opens; silent: keep
# connections open but send nothing (REST hangs); garbage: mix malformed frames into the
# stream (REST answers garbage); down: refuse connections (REST 503); flood: send updates
# for every subscribed symbol, many times over, as fast as the connection takes them.
MODES = ("normal", "drop", "silent", "garbage", "down", "flood")

_conn_ids = itertools.count(1)


class SimSession:
    """One client connection: what it subscribed to and its protocol state."""

    def __init__(self, exchange: str, sim: SimState) -> None:
        self.exchange = exchange
        self.sim = sim
        self.subscribed: dict[str, Instrument] = {}
        self.extra: dict[str, Any] = {}
        self.opened = time.monotonic()
        self.kill = False  # set by Simulator.drop(): close at the next push
        self.heartbeats = False  # Coinbase: subscribed to the heartbeats channel
        self.pending_heartbeat: tuple[Any, float] | None = None  # Crypto.com: (id, deadline)
        self.conn_id = f"{next(_conn_ids):08x}"
        self._seq = itertools.count(1)

    def seq(self) -> int:
        return next(self._seq)

    def lookup(self, symbol: Any) -> Instrument | None:
        """The instrument for a symbol the exchange would accept, else None."""
        if not isinstance(symbol, str):
            return None
        return self.sim.instrument(self.exchange, symbol)

    def quote(self, inst: Instrument) -> tuple[str, str, str]:
        return self.sim.prices.quote(inst.asset, inst.quote, self.exchange)


class SimState:
    """Six fake exchanges' state, controlled in process or through `apply_control` (POST /_control)."""

    def __init__(
        self,
        registry: AssetRegistry | None = None,
        *,
        push_interval_s: float = 0.2,
        updates_per_push: int = 10,
        seed: int | None = None,
        heartbeat_s: Mapping[str, float] | None = None,
        heartbeat_reply_s: float = cryptocom.HEARTBEAT_REPLY_S,
        subscribe_deadline_s: Mapping[str, float] | None = None,
        drop_after_s: float = 0.5,
        rest_stall_s: float = 30.0,
    ) -> None:
        self.registry = registry or load_registry()
        self.push_interval_s = push_interval_s
        self.updates_per_push = updates_per_push
        self.heartbeat_s = dict(heartbeat_s or {})  # overrides of each protocol's own period
        self.heartbeat_reply_s = heartbeat_reply_s
        self.subscribe_deadline_s = dict(subscribe_deadline_s or {})
        self.drop_after_s = drop_after_s
        self.rest_stall_s = rest_stall_s
        self.prices = PriceModel(self.registry.assets, seed=seed)
        self.rng = random.Random(seed)
        self._modes: dict[str, str] = {ex: "normal" for ex in EXCHANGES}
        self.skew: dict[str, float] = {ex: 0.0 for ex in EXCHANGES}
        self._rejected: dict[str, set[str]] = {ex: set() for ex in EXCHANGES}
        self._by_symbol: dict[str, dict[str, Instrument]] = {}
        self._by_rest: dict[str, dict[str, Instrument]] = {}
        for ex in EXCHANGES:
            insts = self.registry.instruments_for(ex)
            self._by_symbol[ex] = {i.symbol: i for i in insts}
            rest = {i.rest_symbol.lower(): i for i in insts}
            rest.update({i.symbol.lower(): i for i in insts})
            self._by_rest[ex] = rest
        self.sessions: dict[str, set[SimSession]] = {ex: set() for ex in EXCHANGES}
        self.rest_calls: Counter[str] = Counter()
        self.ticker_calls: Counter[tuple[str, str]] = Counter()
        self.connections: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()  # connections the simulator closed, per exchange
        self.heartbeat_disconnects: Counter[str] = Counter()

    def accept_rest_names(self, exchange: str, name_of: Callable[[Instrument], str]) -> None:
        """Also accept `name_of(instrument)` in REST calls to `exchange` (Kraken's result keys)."""
        self._by_rest[exchange].update({name_of(i).lower(): i for i in self.registry.instruments_for(exchange)})

    # ---- control -------------------------------------------------------------------------
    def set_mode(self, exchange: str, mode: str) -> None:
        self._check_exchange(exchange)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self._modes[exchange] = mode

    def mode(self, exchange: str) -> str:
        return self._modes.get(exchange, "normal")

    def set_clock_skew(self, exchange: str, seconds: float) -> None:
        """Make the exchange's timestamps run `seconds` ahead of real time (negative: behind)."""
        self._check_exchange(exchange)
        if not math.isfinite(seconds):
            raise ValueError(f"bad clock skew {seconds!r}")
        self.skew[exchange] = float(seconds)

    def reject(self, exchange: str, symbol: str) -> None:
        """Make the exchange answer `symbol` (WS or REST) as an unknown instrument."""
        self._check_exchange(exchange)
        self._rejected[exchange].add(symbol)

    def accept(self, exchange: str, symbol: str) -> None:
        self._check_exchange(exchange)
        self._rejected[exchange].discard(symbol)

    def set_price(self, asset: str, price: Decimal | str | float | None) -> None:
        """Pin `asset` at exactly `price` on every exchange (None resumes the random walk)."""
        if asset not in self.registry:
            raise ValueError(f"unknown asset {asset!r}")
        if price is None:
            self.prices.pin(asset, None)
            return
        try:
            value = Decimal(str(price))
        except InvalidOperation:
            raise ValueError(f"bad price {price!r}") from None
        if not value.is_finite() or value <= 0:
            raise ValueError(f"bad price {price!r}")
        self.prices.pin(asset, value)

    def drop(self, exchange: str) -> int:
        """Close every current connection of `exchange` (within one push interval)."""
        self._check_exchange(exchange)
        for s in self.sessions[exchange]:
            s.kill = True
        return len(self.sessions[exchange])

    def active(self, exchange: str) -> int:
        return len(self.sessions[exchange])

    def reset_counters(self) -> None:
        for c in (self.rest_calls, self.ticker_calls, self.connections, self.disconnects, self.heartbeat_disconnects):
            c.clear()

    def reset(self) -> None:
        """Back to normal: every exchange well-behaved, nothing rejected, prices unpinned."""
        for ex in EXCHANGES:
            self._modes[ex] = "normal"
            self.skew[ex] = 0.0
            self._rejected[ex].clear()
        for asset in list(self.prices.pinned):
            self.prices.pin(asset, None)

    def apply_control(self, body: Any) -> None:
        """One POST /_control action: {"action": "set_mode"|"set_clock_skew"|"reject"|"accept"|
        "set_price"|"drop"|"reset"|"reset_counters", ...}. ValueError, KeyError or TypeError when bad."""
        action = body["action"]
        if action == "set_mode":
            self.set_mode(body["exchange"], body["mode"])
        elif action == "reject":
            self.reject(body["exchange"], body["symbol"])
        elif action == "accept":
            self.accept(body["exchange"], body["symbol"])
        elif action == "set_clock_skew":
            self.set_clock_skew(body["exchange"], float(body["seconds"]))
        elif action == "set_price":
            self.set_price(body["asset"], body.get("price"))
        elif action == "drop":
            self.drop(body["exchange"])
        elif action == "reset":
            self.reset()
        elif action == "reset_counters":
            self.reset_counters()
        else:
            raise ValueError(f"unknown action {action!r}")

    def snapshot(self) -> dict[str, Any]:
        """State and counters, JSON-ready (GET /_control)."""
        return {
            "modes": dict(self._modes),
            "clock_skew": {ex: s for ex, s in self.skew.items() if s},
            "rejected": {ex: sorted(s) for ex, s in self._rejected.items() if s},
            "pinned": {a: str(p) for a, p in self.prices.pinned.items()},
            "active": {ex: len(s) for ex, s in self.sessions.items()},
            "connections": dict(self.connections),
            "disconnects": dict(self.disconnects),
            "heartbeat_disconnects": dict(self.heartbeat_disconnects),
            "rest_calls": dict(self.rest_calls),
            "ticker_calls": {f"{ex}:{asset}": n for (ex, asset), n in self.ticker_calls.items()},
        }

    # ---- lookups used by the protocols ---------------------------------------------------
    def instrument(self, exchange: str, symbol: str) -> Instrument | None:
        if symbol in self._rejected.get(exchange, ()):
            return None
        return self._by_symbol.get(exchange, {}).get(symbol)

    def rest_instrument(self, exchange: str, name: str) -> Instrument | None:
        inst = self._by_rest.get(exchange, {}).get(name.lower())
        if inst is None or inst.symbol in self._rejected[exchange]:
            return None
        return inst

    def listed(self, exchange: str) -> list[Instrument]:
        return [i for i in self._by_symbol[exchange].values() if i.symbol not in self._rejected[exchange]]

    def _check_exchange(self, exchange: str) -> None:
        if exchange not in self._modes:
            raise ValueError(f"unknown exchange {exchange!r}")
