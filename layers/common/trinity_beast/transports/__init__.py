"""How the services reach clients: HTTP, WebSocket, UDP and AWS Lambda. Anything server-specific lives here."""
