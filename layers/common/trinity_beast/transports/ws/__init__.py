"""The WebSocket push feed /ws/prices."""
