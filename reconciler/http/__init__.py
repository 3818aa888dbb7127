"""One HTTP stack for everything reconciler serves: ASGI apps served by uvicorn (server.py),
with a connection budget and idle and header timeouts (protocol.py)."""
