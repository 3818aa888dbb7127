"""Errors of the web API as JSON: `{"error": MESSAGE, "hint": WHAT TO DO, "status": CODE}`.

Raised anywhere under a request (service.py, auth.py, the routes) as `WebError`; the API
answers it as JSON, the dashboard as a page saying the same.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class WebError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "hint": self.hint, "status": self.status, **self.extra}


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(value, indent=1, default=str) + "\n",
        status,
        headers=headers,
        media_type="application/json",
    )


def error_response(error: WebError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="reconciler"'} if error.status == 401 else None
    return json_response(error.to_json(), error.status, headers)
