"""Who may use our Prefect API: the bearer token every route but the probes wants, as an ASGI
middleware, and the check the event websockets apply to their auth frame.

Prefect's client sends PREFECT_API_KEY as `Authorization: Bearer KEY`, and
PREFECT_API_AUTH_STRING ("user:password") as HTTP Basic and, on the event websockets, as the
auth frame's token; either carries our token (as the key, or as the password).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_ROUTES = frozenset({"/health", "/admin/version"})
"""Answered without a token: probes and Prefect's version check."""


class RequireToken:
    """ASGI middleware: 401 for HTTP requests without the token (websockets authenticate
    with their first frame instead)."""

    def __init__(self, app: ASGIApp, token_ok: Callable[[str | None], bool]) -> None:
        self.app = app
        self.token_ok = token_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path not in OPEN_ROUTES and not self.token_ok(presented_token(scope)):
                response = JSONResponse(
                    {
                        "detail": "this Prefect API needs a token: set PREFECT_API_KEY "
                        "(or PREFECT_API_AUTH_STRING=user:TOKEN) to the API's token"
                    },
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def presented_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header = bytes(value).decode("latin-1")
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(credentials.strip()).decode()
                except (binascii.Error, UnicodeDecodeError):
                    return None
                return decoded
    return None


def token_checker(token: str | None) -> Callable[[Any], bool]:
    def token_ok(presented: Any) -> bool:
        if token is None:
            return True
        if not isinstance(presented, str):
            return False
        password = presented.partition(":")[2]  # PREFECT_API_AUTH_STRING is "user:password"
        return hmac.compare_digest(presented.encode(), token.encode()) or hmac.compare_digest(
            password.encode(), token.encode()
        )

    return token_ok
