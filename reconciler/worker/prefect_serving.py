"""The worker's Prefect API and warm interpreter, started with the worker (worker: start-up).

By default the worker serves the Prefect-compatible API (reconciler/prefect_api/) on
127.0.0.1, on a free port, behind a random bearer token that only its runs receive; it answers
only about runs this worker claimed (and their subflows). With `--prefect-api-url` the runs
talk to that API instead (a daemon's `/prefect/api`, for containers on other hosts).

With `--prefect-api-listen HOST:PORT` the worker serves it there instead, for containers on a
bridge or user-defined network, which cannot reach the host's loopback
(reconciler/worker/docker_flows.py): on the Docker gateway (e.g. 172.17.0.1:4300) or on every
address (0.0.0.0:4300; containers then reach it as host.docker.internal). The token guards it
as on loopback. Processes and host-network containers use 127.0.0.1 when the address is a
wildcard, the address itself otherwise.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from reconciler.core.errors import UserError
from reconciler.model.runs import FlowRun
from reconciler.worker.interpreters import probe_prefect, resolve_python
from reconciler.worker.prefect_runtime import PrefectRuntime

if TYPE_CHECKING:
    from reconciler.worker.loop import WorkerOptions

log = logging.getLogger("reconciler.worker")
API_PREFIX = "/prefect/api"


def prefect_runtime(options: WorkerOptions) -> PrefectRuntime:
    python = resolve_python(options.python) if options.python else None
    if options.prefect_api_url:
        runtime = PrefectRuntime(
            api_url=options.prefect_api_url.rstrip("/"), token=options.prefect_api_token
        )
    else:
        runtime = _serve(options)
    if python is not None:
        runtime.python = python
    if options.forkserver:
        runtime.forkserver = _start_forkserver(runtime)
    return runtime


def _serve(options: WorkerOptions) -> PrefectRuntime:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from reconciler.http.server import serve_in_thread
    from reconciler.prefect_api import create_prefect_api

    token = secrets.token_urlsafe(24)
    worker = options.name

    def may_access(run: FlowRun) -> bool:
        return run.worker == worker

    api = create_prefect_api(
        options.settings.open_store,
        may_access=may_access,
        allow_adhoc_runs=False,
        token=token,
    )
    app = Starlette(routes=[Mount(API_PREFIX, app=api)])
    host, port = options.prefect_api_listen or ("127.0.0.1", 0)
    try:
        server = serve_in_thread(app, host=host, port=port, name=f"prefect-api-{worker}")
    except OSError as exc:
        raise UserError(
            f"the worker cannot serve the Prefect API on {host}:{port}: {exc.strerror or exc}",
            "give --prefect-api-listen an address of this machine and a free port",
        ) from exc
    api_url, container_api_url = api_urls(host, server.port)
    runtime = PrefectRuntime(api_url=api_url, token=token, container_api_url=container_api_url)
    runtime.on_close.append(api.state.prefect_api.close)  # runs after the server stopped
    runtime.on_close.append(server.stop)
    log.info("worker %s serves the Prefect API for its runs at %s", worker, runtime.api_url)
    if container_api_url and container_api_url != api_url:
        log.info("containers on bridge networks reach it at %s", container_api_url)
    return runtime


def api_urls(host: str, port: int) -> tuple[str, str | None]:
    """The API's URL for this machine's processes, and for containers on a bridge network
    (None when they cannot reach it: loopback only)."""
    if host in ("0.0.0.0", "::", ""):
        return f"http://127.0.0.1:{port}{API_PREFIX}", (
            f"http://host.docker.internal:{port}{API_PREFIX}"
        )
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}{API_PREFIX}"
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    return url, None if loopback else url


def _start_forkserver(runtime: PrefectRuntime) -> Any:
    """A warm interpreter for the runtime's Python, started in the background with the first
    Prefect flow run, when that Python has Prefect (None otherwise: runs then start a fresh
    interpreter each)."""
    probe = probe_prefect(runtime.python)
    if probe.version is None:
        return None
    from reconciler.worker.forkserver_client import WarmingForkserver

    return WarmingForkserver(runtime.python, runtime.base_env())
