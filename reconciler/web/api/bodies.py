"""Request bodies of the REST API: read within a size limit, parsed, and checked against the
JSON schemas below, which are also the request bodies of the OpenAPI document (openapi.py):
what is published is what is enforced.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from starlette.requests import ClientDisconnect, Request

from reconciler.web.errors import WebError

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BULK_RUNS = 5000

RUN_FIELDS: dict[str, Any] = {
    "parameters": {
        "type": "object",
        "description": "Overlaid on the deployment's parameters; checked against its schema.",
    },
    "job_variables": {
        "type": "object",
        "description": "Overrides of the deployment's job variables; checked against the "
        "pool's base job template.",
    },
    "scheduled_time": {
        "type": "number",
        "description": "When to run, in seconds since the epoch (default: now).",
    },
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "idempotency_key": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": "A second request with the same key creates nothing.",
    },
}

RUN_BODY: dict[str, Any] = {
    "type": "object",
    "properties": RUN_FIELDS,
    "additionalProperties": False,
}

ROLLBACK_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["to"],
    "additionalProperties": False,
    "properties": {
        "to": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "A commit applied before from this repository (id or prefix of 7+), "
            "or the id of an applied plan.",
        }
    },
}

BULK_RUNS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["runs"],
    "additionalProperties": False,
    "properties": {
        "runs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BULK_RUNS,
            "items": {
                "type": "object",
                "required": ["deployment"],
                "additionalProperties": False,
                "properties": {
                    "deployment": {"type": "string", "description": "FLOW/NAME"},
                    **RUN_FIELDS,
                },
            },
        }
    },
}

MAX_EVENTS = 500
_RESOURCE: dict[str, Any] = {
    "type": "object",
    "required": ["prefect.resource.id"],
    "additionalProperties": {"type": "string"},
    "description": "Labels; `prefect.resource.id` names the resource",
}
EVENTS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EVENTS,
            "items": {
                "type": "object",
                "required": ["event", "resource"],
                "additionalProperties": False,
                "properties": {
                    "event": {"type": "string", "minLength": 1, "description": "Its name"},
                    "resource": _RESOURCE,
                    "related": {"type": "array", "items": _RESOURCE},
                    "payload": {"type": "object"},
                    "occurred": {"type": "string", "description": "ISO 8601; default now"},
                    "id": {"type": "string", "description": "Default: a new uuid"},
                },
            },
        }
    },
}

_VALIDATORS = {
    id(schema): jsonschema.Draft202012Validator(schema)
    for schema in (RUN_BODY, BULK_RUNS_BODY, ROLLBACK_BODY, EVENTS_BODY)
}


async def read_json(request: Request, schema: dict[str, Any]) -> dict[str, Any]:
    """The body as JSON, checked against `schema`; WebError 400/413/415/422 otherwise."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _too_large()
    except ClientDisconnect:
        raise WebError(400, "the client went away", "send the request again") from None
    if not body.strip():
        value: Any = {}
    else:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise WebError(
                415, f"the body is {kind}, not JSON", "send Content-Type: application/json"
            )
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebError(
                400, f"the body is not valid JSON: {exc}", "send a JSON object"
            ) from None
    problems = sorted(
        _VALIDATORS[id(schema)].iter_errors(value), key=lambda e: list(e.absolute_path)
    )
    if problems:
        where = [
            ("/".join(str(p) for p in e.absolute_path) or "(the body)") + ": " + e.message
            for e in problems[:20]
        ]
        raise WebError(
            422,
            "the body does not fit its schema: " + "; ".join(where),
            "see the request body's schema in /api/v1/openapi.json",
        )
    assert isinstance(value, dict)
    return value


def _too_large() -> WebError:
    return WebError(
        413,
        f"the body is over {MAX_BODY_BYTES} bytes",
        f"send fewer runs per request (at most {MAX_BULK_RUNS})",
    )
