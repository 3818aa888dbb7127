"""The web app served on 127.0.0.1 by the server the daemon uses, for tests that talk HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.http.server import RunningServer, serve_in_thread
from reconciler.store import open_store
from reconciler.web.app import create_web_app
from reconciler.web.auth import Tokens


@contextmanager
def serve_web(store_url: str, tokens: Tokens) -> Iterator[RunningServer]:
    app = create_web_app(lambda: open_store(store_url), tokens=tokens)
    running = serve_in_thread(app, "127.0.0.1", 0, name="web-test")
    try:
        yield running
    finally:
        running.stop()
        app.state.web.close()
