"""The worker's `--with-healthcheck` endpoint: GET /health is 200 while the claim loop turns,
503 when it is stuck (as Prefect's worker healthcheck)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from waitress.server import create_server


def serve_health(
    address: tuple[str, int], healthy: Callable[[], bool], stopping: threading.Event
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/health":
            status, body = "404 Not Found", {"message": "no such path"}
        elif healthy():
            status, body = "200 OK", {"message": "OK"}
        else:
            status, body = (
                "503 Service Unavailable",
                {"message": "Worker may be unresponsive at this time"},
            )
        data = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    server = create_server(app, host=address[0], port=address[1], threads=1)
    threading.Thread(target=server.run, name="health", daemon=True).start()

    def close_when_stopping() -> None:
        stopping.wait()
        server.close()

    threading.Thread(target=close_when_stopping, daemon=True).start()
