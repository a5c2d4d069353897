"""LPO: the latency-critical price servers (HTTP and WebSocket on 8080, UDP on 2679)."""
