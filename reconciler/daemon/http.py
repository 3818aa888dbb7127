"""The daemon's HTTP endpoints, as a Starlette (ASGI) app served by reconciler/http/server.py.

    POST /hooks/events/<name>  event webhook (`event_webhooks:`): authenticated as the
                         repository webhooks are, its template makes the body an event, stored
                         (201); an unsigned or badly signed call is refused (401), nothing stored
    POST /hooks/<repo>   webhook: authenticated (webhooks.py), then an immediate fetch and
                         reconcile of that repository; answers 202 at once
    GET  /status         every repository's status (JSON)
    GET  /healthz        200 when the daemon runs and its store answers, else 503; says
                         whether this daemon is the active one or a standby
    GET  /metrics        Prometheus text format
    <prefix>/...         each ASGI app given in `mounts` (e.g. the Prefect API at /prefect/api)

Other methods get 405, other paths 404, both with a JSON `error`. A webhook's body is read
as it streams, and refused with 413 as soon as it passes MAX_BODY_BYTES (at once when its
Content-Length says so), or with 408 when it has not arrived within BODY_TIMEOUT_SECONDS.
The endpoints that read the store run in Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from reconciler.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.webhooks import MAX_BODY_BYTES, authenticate

log = logging.getLogger("reconciler.daemon.http")

BODY_TIMEOUT_SECONDS = 30.0


class BodyRefused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class DaemonEndpoints:
    def __init__(
        self,
        *,
        secrets: dict[str, str | None],
        trigger: Callable[[str, str], None],
        statuses: Callable[[], list[dict[str, Any]]],
        healthy: Callable[[], str | None],
        metrics: Metrics,
        role: Callable[[], str] = lambda: "active",
        event_hooks: Mapping[str, tuple[str, str]] | None = None,
        store_event: Callable[[Any], None] | None = None,
    ) -> None:
        """`event_hooks`: name -> (secret, template); `store_event` stores an EventRecord."""
        self.secrets = secrets
        self.trigger = trigger
        self.statuses = statuses
        self.healthy = healthy
        self.metrics = metrics
        self.role = role
        self.event_hooks = dict(event_hooks or {})
        self.store_event = store_event

    def status(self, request: Request) -> Response:
        return json_response(200, {"repositories": self.statuses()})

    def healthz(self, request: Request) -> Response:
        problem = self.healthy()
        if problem:
            return json_response(503, {"status": problem})
        return json_response(200, {"status": "ok", "role": self.role()})

    def render_metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), 200, media_type=METRICS_CONTENT_TYPE)

    async def hook(self, request: Request) -> Response:
        name = request.path_params["repo"]
        if name not in self.secrets:
            return json_response(404, {"error": f"no repository {name!r}"})
        secret = self.secrets[name]
        if secret is None:
            return json_response(
                404, {"error": f"repository {name!r} has no webhook_secret: webhooks are off"}
            )
        body = await signed_body(request, secret, f"webhook for repo={name}")
        if isinstance(body, Response):
            return body
        await run_in_threadpool(self.trigger, name, "webhook")
        return json_response(202, {"accepted": name})

    async def event_hook(self, request: Request) -> Response:
        from reconciler.model.prefect_records import utc_now_iso
        from reconciler.prefect_rules.triggers import EventShapeError, webhook_event

        name = request.path_params["name"]
        hook = self.event_hooks.get(name)
        if hook is None or self.store_event is None:
            return json_response(404, {"error": f"no event webhook {name!r}"})
        secret, template = hook
        body = await signed_body(request, secret, f"event webhook {name}")
        if isinstance(body, Response):
            return body
        try:
            event = webhook_event(template, body, request.headers, now=utc_now_iso())
        except EventShapeError as exc:
            return json_response(422, {"error": str(exc)})
        await run_in_threadpool(self.store_event, event)
        return json_response(201, {"id": event.id, "event": event.event})


async def signed_body(request: Request, secret: str, what: str) -> bytes | Response:
    """The body of a webhook whose HMAC signature checks out (constant time), or the error
    response to send: a body too large or too slow, a client gone, a bad signature (401)."""
    try:
        body = await read_body(request)
    except BodyRefused as refused:
        return refused.response
    except ClientDisconnect:
        return json_response(400, {"error": "the client went away"})
    problem = authenticate(secret, body, request.headers)
    if problem is not None:
        log.warning("%s refused: %s", what, problem)
        return json_response(401, {"error": problem})
    return body


async def read_body(request: Request) -> bytes:
    """The request's body, at most MAX_BODY_BYTES, within BODY_TIMEOUT_SECONDS."""
    declared = request.headers.get("content-length")
    if declared is not None:
        # isdigit() alone takes "²" (a latin-1 header byte) for a digit, which int() refuses.
        if not (declared.strip().isascii() and declared.strip().isdigit()):
            raise BodyRefused(json_response(400, {"error": "bad Content-Length"}))
        if int(declared) > MAX_BODY_BYTES:
            raise BodyRefused(_too_large())
    body = bytearray()
    try:
        with anyio.fail_after(BODY_TIMEOUT_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise BodyRefused(_too_large())
    except TimeoutError:
        raise BodyRefused(
            json_response(
                408, {"error": f"the body did not arrive within {BODY_TIMEOUT_SECONDS:.0f}s"}
            )
        ) from None
    return bytes(body)


def _too_large() -> Response:
    return json_response(413, {"error": f"bodies over {MAX_BODY_BYTES} bytes are refused"})


def json_response(status: int, value: Any) -> Response:
    return Response(json.dumps(value, indent=2) + "\n", status, media_type="application/json")


async def _not_found_or_wrong_method(request: Request, exc: Exception) -> Response:
    """404 for unknown paths, 405 for a method a path does not take (also on unknown paths,
    as a GET-only server: only /hooks/ takes POST)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if path.startswith("/hooks/") and request.method != "POST":
        return json_response(405, {"error": "use POST"})
    if status == 405 or (
        status == 404 and request.method not in ("GET", "HEAD") and not path.startswith("/hooks/")
    ):
        return json_response(405, {"error": "use GET"})
    if status == 404:
        return json_response(404, {"error": f"no such path: {path}"})
    return json_response(status, {"error": getattr(exc, "detail", "error")})


def daemon_app(
    endpoints: DaemonEndpoints,
    mounts: Mapping[str, ASGIApp] | None = None,
    routes_after: list[BaseRoute] | None = None,
) -> Starlette:
    """The daemon's routes, then each of `mounts` (prefix -> ASGI app, e.g. "/prefect/api"),
    then `routes_after` (the web API and dashboard, reconciler/web)."""
    routes: list[BaseRoute] = [
        Route("/hooks/events/{name}", endpoints.event_hook, methods=["POST"]),
        Route("/hooks/{repo:path}", endpoints.hook, methods=["POST"]),
        Route("/status", endpoints.status, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/metrics", endpoints.render_metrics, methods=["GET"]),
    ]
    routes += [Mount(prefix, app=app) for prefix, app in (mounts or {}).items()]
    routes += routes_after or []
    return Starlette(
        routes=routes,
        exception_handlers={404: _not_found_or_wrong_method, 405: _not_found_or_wrong_method},
    )
