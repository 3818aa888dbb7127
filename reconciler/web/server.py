"""`reconcile server --store URL --listen HOST:PORT`: the web API and dashboard without the
reconcile loop, for a store no daemon serves (web: process entry).

It refuses to listen beyond loopback with no token configured (auth.py). "Sync now" is
refused there (no loop); everything else works as on the daemon's address. SIGTERM or
SIGINT stops it: requests in progress finish, then it exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType

from reconciler.core.errors import UserError
from reconciler.daemon.config import parse_listen
from reconciler.http.server import listen_socket, serve_in_thread
from reconciler.settings import settings_for_store
from reconciler.store.url import store_exists
from reconciler.web.app import create_web_app
from reconciler.web.auth import ADMIN_TOKEN_VARIABLE, Tokens

log = logging.getLogger("reconciler.web")
DEFAULT_LISTEN = "127.0.0.1:8421"


def serve(store_url: str | None, listen: str, environ: Mapping[str, str]) -> int:
    host, port = parse_listen(listen, "--listen")
    tokens = Tokens.from_environ(environ)
    tokens.check_exposure(host)
    settings = settings_for_store(store_url)
    url = settings.store_url
    if not store_exists(url):
        raise UserError(
            f"there is no store at {url}",
            "give --store (or RECONCILER_STORE) the store a daemon or `reconcile` writes to",
        )
    # Opened once now: a store that cannot be opened is reported before serving.
    first = settings.open_store()
    shown = first.url
    first.close()
    app = create_web_app(settings.open_store, tokens=tokens)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    running = serve_in_thread(app, name="web", sock=listen_socket(host, port))
    log.info(
        "serving the API and dashboard on %s (store %s; reads %s; actions %s)",
        running.url,
        shown,
        "need a token" if tokens.any else "open to anyone who can connect",
        "take the admin token" if tokens.admin else f"off (no {ADMIN_TOKEN_VARIABLE})",
    )
    stop.wait()
    running.stop()
    return 0
