"""The worker's `--with-healthcheck` endpoint: GET /health is 200 while the claim loop turns,
503 when it is stuck (as Prefect's worker healthcheck). Served by reconciler/http/server.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.http.server import serve_in_thread


def health_app(healthy: Callable[[], bool]) -> Starlette:
    def health(request: Request) -> Response:
        if healthy():
            return _json(200, {"message": "OK"})
        return _json(503, {"message": "Worker may be unresponsive at this time"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json(404, {"message": "no such path"})

    return Starlette(routes=[Route("/health", health)], exception_handlers={404: not_found})


def serve_health(
    address: tuple[str, int], healthy: Callable[[], bool], stopping: threading.Event
) -> None:
    server = serve_in_thread(health_app(healthy), address[0], address[1], name="health")

    def close_when_stopping() -> None:
        stopping.wait()
        server.stop(1.0)

    threading.Thread(target=close_when_stopping, name="health-stop", daemon=True).start()


def _json(status: int, body: dict[str, str]) -> Response:
    return Response(json.dumps(body), status, media_type="application/json")
