"""The web app: the REST API at /api/v1 and the dashboard at / (web: the ASGI entry).

    routes, service = web_routes(lambda: open_store(url), tokens=Tokens.from_environ(env))
    app = create_web_app(lambda: open_store(url), tokens=...)      # `reconcile server`

The daemon adds `web_routes` to its own (reconciler/daemon/http.py), so its /status,
/healthz, /metrics, /hooks and /prefect/api stay as they were and unknown paths still get
its JSON 404. `sync_now` is the daemon's trigger ("sync now"); without it (`reconcile
server`), syncing is refused with a hint. The service opens one store per thread of
Starlette's pool; `service.close()` closes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from reconciler.store.base import Store
from reconciler.web.api.openapi import openapi_document
from reconciler.web.api.routes import Api, not_found
from reconciler.web.auth import Tokens
from reconciler.web.service import PlanRef, RollbackTo, SyncNow, WebService

API_PREFIX = "/api/v1"


def web_routes(
    open_store: Callable[[], Store],
    *,
    tokens: Tokens,
    sync_now: SyncNow | None = None,
    dashboard: bool = True,
    plan_ref: PlanRef | None = None,
    rollback_to: RollbackTo | None = None,
    git_dir_of: Callable[[str], str | None] | None = None,
) -> tuple[list[BaseRoute], WebService]:
    service = WebService(
        open_store,
        sync_now=sync_now,
        plan_ref=plan_ref,
        rollback_to=rollback_to,
        git_dir_of=git_dir_of,
    )
    api = Api(service, tokens, openapi_document())
    api_app = Starlette(routes=api.routes(), exception_handlers={404: not_found, 405: not_found})
    routes: list[BaseRoute] = [Mount(API_PREFIX, app=api_app)]
    if dashboard:
        from reconciler.web.dashboard.pages import dashboard_routes

        routes += dashboard_routes(service, tokens, api)
    return routes, service


def create_web_app(
    open_store: Callable[[], Store],
    *,
    tokens: Tokens,
    sync_now: SyncNow | None = None,
    dashboard: bool = True,
) -> Starlette:
    routes, service = web_routes(open_store, tokens=tokens, sync_now=sync_now, dashboard=dashboard)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = service
    return app
