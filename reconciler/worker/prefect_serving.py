"""The worker's Prefect API and warm interpreter, started with the worker (worker: start-up).

By default the worker serves the Prefect-compatible API (reconciler/prefect_api/) on
127.0.0.1, on a free port, behind a random bearer token that only its runs receive; it answers
only about runs this worker claimed (and their subflows). With `--prefect-api-url` the runs
talk to that API instead (a daemon's `/prefect/api`, for containers on other hosts).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from reconciler.runs import FlowRun
from reconciler.store import open_store
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
        lambda: open_store(options.store_url),
        may_access=may_access,
        allow_adhoc_runs=False,
        token=token,
    )
    app = Starlette(routes=[Mount(API_PREFIX, app=api)])
    server = serve_in_thread(app, host="127.0.0.1", port=0, name=f"prefect-api-{worker}")
    runtime = PrefectRuntime(api_url=f"{server.url}{API_PREFIX}", token=token)
    runtime.on_close.append(api.state.prefect_api.close)  # runs after the server stopped
    runtime.on_close.append(server.stop)
    log.info("worker %s serves the Prefect API for its runs at %s", worker, runtime.api_url)
    return runtime


def _start_forkserver(runtime: PrefectRuntime) -> Any:
    """A warm interpreter for the runtime's Python, warming up in the background, when that
    Python has Prefect (None otherwise: runs then start a fresh interpreter each)."""
    probe = probe_prefect(runtime.python)
    if probe.version is None:
        return None
    from reconciler.worker.forkserver_client import WarmingForkserver

    return WarmingForkserver(runtime.python, runtime.base_env())
