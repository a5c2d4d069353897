"""Exchange simulator: the six exchanges' real protocols on loopback, for tests and offline runs.

The entry point: `Simulator` (server.py) serves the state (state.py) of six simulated exchanges
(exchanges/, one module each) over WebSocket (websocket.py) and REST (rest.py) at the URLs
`sim_urls` / `sim_env` give (urls.py). Modules import only downwards, never this package.
"""

from beast_sim.exchanges import PROTOCOLS
from beast_sim.server import Simulator, serve
from beast_sim.state import MODES, SimSession
from beast_sim.urls import sim_env, sim_urls

__all__ = ["MODES", "PROTOCOLS", "SimSession", "Simulator", "serve", "sim_env", "sim_urls"]
