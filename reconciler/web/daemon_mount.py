"""The web API and dashboard on the daemon's address (daemon: start-up).

With a read or admin token configured they are served wherever the daemon listens. With
none, only when the daemon listens on loopback (reads then are open to local users, and
actions are off); a daemon listening beyond loopback without a token serves its webhooks,
status and metrics as before, and says in its log how to turn the web API on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from reconciler.settings import Settings
from reconciler.web.auth import ADMIN_TOKEN_VARIABLE, READ_TOKEN_VARIABLE, Tokens, is_loopback

if TYPE_CHECKING:
    from reconciler.daemon.runner import Daemon

log = logging.getLogger("reconciler.daemon")


def web_for_daemon(
    settings: Settings, listen_host: str, environ: Mapping[str, str]
) -> Callable[[Daemon], list[BaseRoute]] | None:
    tokens = Tokens.from_environ(environ)
    if not tokens.any and not is_loopback(listen_host):
        log.info(
            "the web API and dashboard are not served (the daemon listens on %s and no token "
            "is set): export %s (and %s to act) to serve them",
            listen_host,
            READ_TOKEN_VARIABLE,
            ADMIN_TOKEN_VARIABLE,
        )
        return None

    def make(daemon: Daemon) -> list[BaseRoute]:
        from reconciler.web.app import web_routes

        routes, _ = web_routes(
            settings.open_store,
            tokens=tokens,
            sync_now=daemon.sync_now,
            plan_ref=daemon.plan_ref,
            rollback_to=daemon.rollback_to,
            git_dir_of=daemon.git_dir_of,
        )
        return routes

    return make
