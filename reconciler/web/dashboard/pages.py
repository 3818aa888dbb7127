"""The dashboard's pages (placeholder until the pages land)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from reconciler.web.auth import Tokens
from reconciler.web.service import WebService


def dashboard_routes(service: WebService, tokens: Tokens) -> list[BaseRoute]:
    return []
