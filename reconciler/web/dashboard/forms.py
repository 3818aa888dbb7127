"""The deployment page's "run" form, generated from the flow's parameter schema, and the
submitted form read back into parameters (dashboard: schema -> fields -> parameters).

A property of a simple type gets a matching input (integer and number: number inputs;
boolean: a true/false choice; a string with `enum` or a Literal: a choice; string: text);
anything else (objects, lists, unions, models) a JSON text area. An empty field leaves the
parameter to the deployment's value or the flow's default. The values are then checked by
the same code as the API's (run_requests.py): the form cannot create a run the API refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.web.errors import WebError


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # integer | number | boolean | choice | string | json
    title: str
    required: bool
    value: str
    """What the input shows: the deployment's value, else the default, as text."""
    choices: tuple[str, ...] = ()
    description: str = ""


def _enum(prop: dict[str, Any]) -> list[Any] | None:
    if isinstance(prop.get("enum"), list):
        return list(prop["enum"])
    for key in ("anyOf", "allOf"):
        for part in prop.get(key) or []:
            if isinstance(part, dict) and isinstance(part.get("enum"), list):
                return list(part["enum"])
    return None


def _kind(prop: dict[str, Any]) -> str:
    enum = _enum(prop)
    if enum is not None and all(isinstance(v, str) for v in enum):
        return "choice"
    kind = prop.get("type")
    if kind in ("integer", "number", "boolean", "string") and "format" not in prop:
        return str(kind)
    if kind == "string":
        return "string"
    return "json"


def _shown(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    if kind == "boolean":
        return "true" if value else "false"
    return str(value)


def fields_of(schema: dict[str, Any], deployment_parameters: dict[str, Any]) -> list[Field]:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields = []
    ordered = sorted(properties.items(), key=lambda item: (item[1].get("position", 0), item[0]))
    for name, prop in ordered:
        if not isinstance(prop, dict):
            continue
        kind = _kind(prop)
        value = deployment_parameters.get(name, prop.get("default"))
        fields.append(
            Field(
                name=name,
                kind=kind,
                title=str(prop.get("title") or name),
                required=name in required and name not in deployment_parameters,
                value=_shown(kind, value),
                choices=tuple(str(v) for v in _enum(prop) or ()),
                description=str(prop.get("description") or ""),
            )
        )
    return fields


def parameters_from_form(fields: list[Field], form: dict[str, str]) -> dict[str, Any]:
    """The parameters a submitted form gives; a value that cannot be read raises 422."""
    parameters: dict[str, Any] = {}
    problems = []
    for field in fields:
        text = form.get(f"param.{field.name}", "").strip()
        if text == "" or text == field.value:
            continue  # left as the deployment's value or the default
        try:
            if field.kind == "integer":
                parameters[field.name] = int(text)
            elif field.kind == "number":
                parameters[field.name] = float(text)
            elif field.kind == "boolean":
                if text not in ("true", "false"):
                    raise ValueError(text)
                parameters[field.name] = text == "true"
            elif field.kind == "json":
                parameters[field.name] = json.loads(text)
            else:
                parameters[field.name] = text
        except ValueError:
            problems.append(f"{field.name}: {text!r} is not a valid {field.kind}")
    if problems:
        raise WebError(
            422,
            "the form has values that cannot be read: " + "; ".join(problems),
            "correct them and submit again",
        )
    return parameters
