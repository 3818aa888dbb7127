"""The OpenAPI 3.1 document of /api/v1, made from the endpoint table (routes.ENDPOINTS) and
the request-body schemas that the API enforces (bodies.py). Versioned: `info.version` is
the API's version (1.x: additions only), not the program's. The published copy is
schemas/web-api-v1.openapi.json; tests/web/test_openapi_stable.py fails when the served
document drifts from it, so every change to the API is a deliberate one.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.web.api.routes import ENDPOINTS, Endpoint

API_VERSION = "1.0.0"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "hint", "status"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong."},
        "hint": {"type": ["string", "null"], "description": "What to do about it."},
        "status": {"type": "integer"},
    },
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    for param in endpoint.params:
        schema: dict[str, Any] = (
            {"type": "array", "items": {"type": "string"}}
            if param.kind == "array"
            else {"type": param.kind}
        )
        if param.minimum is not None:
            schema["minimum"] = param.minimum
        if param.maximum is not None:
            schema["maximum"] = param.maximum
        if param.default is not None:
            schema["default"] = param.default
        parameters.append(
            {"name": param.name, "in": "query", "description": param.description, "schema": schema}
        )
    ok = "202" if endpoint.handler in ("sync", "cancel") else "201" if endpoint.body else "200"
    responses: dict[str, Any] = {
        ok: {"description": "Done." if endpoint.action else "The data, as JSON."},
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
    }
    if endpoint.handler == "log_stream":
        responses[ok] = {
            "description": "Server-sent events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    if "{" in endpoint.path:
        responses["404"] = {"$ref": "#/components/responses/Error"}
    if endpoint.action:
        responses["403"] = {"$ref": "#/components/responses/Error"}
        responses["409"] = {"$ref": "#/components/responses/Error"}
    operation: dict[str, Any] = {
        "operationId": endpoint.handler,
        "summary": endpoint.summary,
        "tags": [endpoint.tag] if endpoint.tag else [],
        "parameters": parameters,
        "responses": responses,
        "security": [{"bearer": []}] if endpoint.action else [{"bearer": []}, {}],
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": endpoint.handler == "create_runs",
            "content": {"application/json": {"schema": endpoint.body}},
        }
        responses["413"] = {"$ref": "#/components/responses/Error"}
        responses["422"] = {"$ref": "#/components/responses/Error"}
    return operation


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reconciler API",
            "version": API_VERSION,
            "description": "Read the state of a reconciler store and act on it. Reads take "
            "the read or admin token (open when the server has none); actions take the admin "
            "token. Errors are JSON: `error` (what went wrong), `hint` (what to do), `status`.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                "Error": {
                    "description": "An error, with what to do about it.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
        },
    }
