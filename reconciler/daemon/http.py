"""The daemon's HTTP endpoints, as a WSGI app served by waitress.

    POST /hooks/<repo>   webhook: authenticated (webhooks.py), then an immediate fetch and
                         reconcile of that repository; answers 202 at once
    GET  /status         every repository's status (JSON)
    GET  /healthz        200 when the daemon runs and its store answers, else 503; says
                         whether this daemon is the active one or a standby
    GET  /metrics        Prometheus text format

Four routes do not need a web framework; waitress gives a threaded server with request size
limits, and is pure Python.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from reconciler.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.webhooks import MAX_BODY_BYTES, authenticate

log = logging.getLogger("reconciler.daemon.http")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]


class DaemonApp:
    def __init__(
        self,
        *,
        secrets: dict[str, str | None],
        trigger: Callable[[str, str], None],
        statuses: Callable[[], list[dict[str, Any]]],
        healthy: Callable[[], str | None],
        metrics: Metrics,
        role: Callable[[], str] = lambda: "active",
    ) -> None:
        self.secrets = secrets
        self.trigger = trigger
        self.statuses = statuses
        self.healthy = healthy
        self.metrics = metrics
        self.role = role

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/hooks/"):
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed", {"error": "use POST"})
            return self.hook(path.removeprefix("/hooks/"), environ, start_response)
        if method not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
        if path == "/status":
            return _json(start_response, "200 OK", {"repositories": self.statuses()})
        if path == "/healthz":
            problem = self.healthy()
            if problem:
                return _json(start_response, "503 Service Unavailable", {"status": problem})
            return _json(start_response, "200 OK", {"status": "ok", "role": self.role()})
        if path == "/metrics":
            body = self.metrics.render()
            start_response(
                "200 OK",
                [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))],
            )
            return [body]
        return _json(start_response, "404 Not Found", {"error": f"no such path: {path}"})

    def hook(self, name: str, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if name not in self.secrets:
            return _json(start_response, "404 Not Found", {"error": f"no repository {name!r}"})
        secret = self.secrets[name]
        if secret is None:
            return _json(
                start_response,
                "404 Not Found",
                {"error": f"repository {name!r} has no webhook_secret: webhooks are off"},
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json(start_response, "400 Bad Request", {"error": "bad Content-Length"})
        if length > MAX_BODY_BYTES:
            return _json(
                start_response,
                "413 Content Too Large",
                {"error": f"bodies over {MAX_BODY_BYTES} bytes are refused"},
            )
        body = environ["wsgi.input"].read(length) if length else b""
        problem = authenticate(secret, body, environ)
        if problem is not None:
            log.warning("webhook for repo=%s refused: %s", name, problem)
            return _json(start_response, "401 Unauthorized", {"error": problem})
        self.trigger(name, "webhook")
        return _json(start_response, "202 Accepted", {"accepted": name})


def _json(start_response: StartResponse, status: str, value: Any) -> list[bytes]:
    body = (json.dumps(value, indent=2) + "\n").encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def make_server(app: DaemonApp, host: str, port: int) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server bound now (port 0 picks a free port); `.run()` serves."""
    return create_server(
        app,
        host=host,
        port=port,
        threads=4,
        max_request_body_size=MAX_BODY_BYTES,
        ident="reconciler",
        clear_untrusted_proxy_headers=True,
    )
