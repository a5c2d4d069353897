"""Exchange simulator: the six exchanges' real protocols on loopback, for tests and offline runs."""

from beast_sim.server import MODES, Simulator, serve, sim_env, sim_urls

__all__ = ["MODES", "Simulator", "serve", "sim_env", "sim_urls"]
