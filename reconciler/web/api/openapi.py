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

API_VERSION = "1.3.0"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "hint", "status"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong."},
        "hint": {"type": ["string", "null"], "description": "What to do about it."},
        "status": {"type": "integer"},
    },
}


_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_BRIEF_RUN: dict[str, Any] = {
    "description": "The most recent run scheduled up to now (last_run), or the next waiting "
    "one (next_run); null when there is none.",
    "anyOf": [
        {
            "type": "object",
            "required": ["id", "name", "state", "scheduled_at"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "state": {"type": "string"},
                "scheduled_at": {"type": "string", "format": "date-time"},
            },
        },
        {"type": "null"},
    ],
}
_OWNER = {
    "type": ["object", "null"],
    "properties": {"repo": _STR, "file": _STR},
    "required": ["repo", "file"],
}
_STATES = [
    "SCHEDULED",
    "LATE",
    "PENDING",
    "RUNNING",
    "CANCELLING",
    "COMPLETED",
    "FAILED",
    "CRASHED",
    "CANCELLED",
]
_RESOURCE = {
    "type": "object",
    "required": ["key", "owner", "source_commit", "content_hash", "spec"],
    "properties": {
        "key": _STR,
        "owner": _OWNER,
        "source_commit": _STR_OR_NULL,
        "content_hash": _STR,
        "spec": {"type": "object"},
    },
}
_WORKER = {
    "type": "object",
    "required": ["pool", "name", "online", "last_heartbeat", "heartbeat_seconds"],
    "properties": {
        "pool": _STR,
        "name": _STR,
        "online": {"type": "boolean"},
        "last_heartbeat": _STR,
        "heartbeat_seconds": {"type": "number"},
        "started_at": _STR,
    },
}
_FLOW_RUN = {
    "type": "object",
    "required": ["id", "name", "deployment", "state", "scheduled_time", "parameters", "history"],
    "properties": {
        "id": _STR,
        "name": _STR,
        "deployment": _STR,
        "flow_name": _STR,
        "work_pool": _STR,
        "work_queue": _STR,
        "state": {"enum": _STATES},
        "state_message": _STR_OR_NULL,
        "scheduled_time": {"type": "number", "description": "Seconds since the epoch."},
        "scheduled_at": _STR,
        "parameters": {"type": "object"},
        "job_variables": {"type": "object"},
        "worker": _STR_OR_NULL,
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["state", "at"],
                "properties": {"state": {"enum": _STATES}, "at": _STR, "message": _STR_OR_NULL},
            },
        },
        "auto_scheduled": {"type": "boolean"},
    },
}
COMPONENT_SCHEMAS: dict[str, Any] = {
    "Error": ERROR_SCHEMA,
    "FlowRun": _FLOW_RUN,
    "FlowRunPage": {
        "type": "object",
        "required": ["flow_runs", "next_cursor"],
        "properties": {
            "flow_runs": {"type": "array", "items": {"$ref": "#/components/schemas/FlowRun"}},
            "next_cursor": _STR_OR_NULL,
        },
    },
    "DeploymentPage": {
        "type": "object",
        "required": ["deployments", "next_cursor"],
        "properties": {
            "deployments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "flow_name", "work_pool", "paused", "owner"],
                    "properties": {
                        "key": _STR,
                        "flow_name": _STR,
                        "work_pool": _STR_OR_NULL,
                        "work_queue": _STR_OR_NULL,
                        "paused": {"type": "boolean"},
                        "schedules": {"type": "integer"},
                        "owner": _OWNER,
                        "source_commit": _STR_OR_NULL,
                        "last_run": _BRIEF_RUN,
                        "next_run": _BRIEF_RUN,
                    },
                },
            },
            "next_cursor": _STR_OR_NULL,
        },
    },
    "Deployment": {
        "allOf": [{"$ref": "#/components/schemas/Resource"}],
        "required": [
            "owner_file",
            "owner_line",
            "parameter_schema",
            "schedules",
            "last_run",
            "next_run",
        ],
        "properties": {
            "owner_file": _STR_OR_NULL,
            "owner_line": {"type": ["integer", "null"]},
            "parameter_schema": {"type": "object"},
            "schedules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["schedule", "active", "next_fire_times", "problem"],
                    "properties": {
                        "schedule": {"type": "object"},
                        "active": {"type": "boolean"},
                        "next_fire_times": {"type": "array", "items": _STR},
                        "problem": _STR_OR_NULL,
                    },
                },
            },
            "last_run": {"anyOf": [{"$ref": "#/components/schemas/FlowRun"}, {"type": "null"}]},
            "next_run": {"anyOf": [{"$ref": "#/components/schemas/FlowRun"}, {"type": "null"}]},
        },
    },
    "Resource": _RESOURCE,
    "WorkPools": {
        "type": "object",
        "required": ["work_pools"],
        "properties": {
            "work_pools": {
                "type": "array",
                "items": {
                    "allOf": [{"$ref": "#/components/schemas/Resource"}],
                    "required": ["queues", "workers", "runs_in_flight"],
                    "properties": {
                        "queues": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Resource"},
                        },
                        "workers": {"type": "array", "items": _WORKER},
                        "runs_in_flight": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                        },
                    },
                },
            }
        },
    },
    "Repositories": {
        "type": "object",
        "required": ["repositories"],
        "properties": {
            "repositories": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "state", "sync_suspended", "updated_at"],
                    "properties": {
                        "name": _STR,
                        "state": {
                            "enum": ["Progressing", "Synced", "OutOfSync", "Error", "Stalled"]
                        },
                        "applied_commit": _STR_OR_NULL,
                        "last_error": _STR_OR_NULL,
                        "next_attempt_at": _STR_OR_NULL,
                        "drift": {"type": "array", "items": _STR},
                        "sync_suspended": {"type": "boolean"},
                        "updated_at": _STR,
                    },
                },
            }
        },
    },
    "AuditLog": {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "at", "actor", "action", "target", "detail"],
                    "properties": {
                        "id": {"type": "integer"},
                        "at": _STR,
                        "actor": _STR,
                        "action": _STR,
                        "target": _STR,
                        "detail": {"type": "object"},
                    },
                },
            }
        },
    },
}
RESPONSE_SCHEMAS = {
    "repositories": "Repositories",
    "deployments": "DeploymentPage",
    "deployment": "Deployment",
    "create_run": "FlowRun",
    "runs": "FlowRunPage",
    "run": "FlowRun",
    "work_pools": "WorkPools",
    "audit_log": "AuditLog",
}
"""Endpoints whose answer's shape is published (the others: see their summary)."""


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
    if endpoint.handler in RESPONSE_SCHEMAS:
        reference = f"#/components/schemas/{RESPONSE_SCHEMAS[endpoint.handler]}"
        responses[ok]["content"] = {"application/json": {"schema": {"$ref": reference}}}
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
            "schemas": COMPONENT_SCHEMAS,
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
