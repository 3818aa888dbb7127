"""The Prefect API on the daemon's address, at /prefect/api (daemon: start-up).

Workers whose runs execute elsewhere (containers on other hosts) point those runs at it with
`reconcile worker start --prefect-api-url http://DAEMON:PORT/prefect/api`. It answers about
runs a worker has claimed. It is served only with a bearer token (RECONCILER_PREFECT_API_TOKEN,
or the file named by RECONCILER_PREFECT_API_TOKEN_FILE), which the workers pass to their runs:
it hands out variables and secret blocks in clear, so not even a local user without the token
may read it (a worker's own API has a random token of its own, for the same reason).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.errors import UserError
from reconciler.model.runs import FlowRun
from reconciler.settings import Settings

log = logging.getLogger("reconciler.daemon")
PREFIX = "/prefect/api"
TOKEN_VARIABLE = "RECONCILER_PREFECT_API_TOKEN"


def prefect_api_token(environ: Mapping[str, str]) -> str | None:
    value = environ.get(TOKEN_VARIABLE)
    if value:
        return value
    path = environ.get(f"{TOKEN_VARIABLE}_FILE")
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UserError(
            f"cannot read {TOKEN_VARIABLE}_FILE {path}: {exc.strerror or exc}",
            "point it at a readable file holding the token",
        ) from exc
    if not token:
        raise UserError(f"{TOKEN_VARIABLE}_FILE {path} is empty", "write the token into it")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prefect_api_mounts(
    settings: Settings, listen_host: str, environ: Mapping[str, str]
) -> dict[str, Any]:
    """{"/prefect/api": app}, or {} when it may not be served (beyond loopback, no token)."""
    token = prefect_api_token(environ)
    if token is None:
        where = "" if is_loopback(listen_host) else f" (the daemon listens on {listen_host})"
        log.info(
            "the Prefect API (%s) is not served%s: export %s to serve it to workers' runs",
            PREFIX,
            where,
            TOKEN_VARIABLE,
        )
        return {}
    from reconciler.prefect_api import create_prefect_api

    def may_access(run: FlowRun) -> bool:
        return run.worker is not None

    app = create_prefect_api(
        settings.open_store,
        may_access=may_access,
        allow_adhoc_runs=False,
        token=token,
    )
    return {PREFIX: app}
