"""Trinity Beast: real-time cryptocurrency prices from six exchanges, served over HTTP, UDP and WebSocket."""

__version__ = "0.1.0"
