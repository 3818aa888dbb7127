"""Our specs as Prefect holds them, and Prefect's objects back as our specs.

A plan against Prefect compares the *Prefect view* of each object: the fields Prefect stores,
written the way Prefect gives them back. `desired_view` makes that view of a desired resource
(with its pull steps pinned to the commit being applied); `observed_*` make it from what the
server returned. Both go through `_deployment_view` / `_pool_view` / `_queue_view`, so an object
applied and read back compares equal, and a value changed in Prefect's UI is a field diff.
The views share values with the dict they were made from, which is always a fresh one
(`Resource.spec`, or JSON just decoded): nothing is copied.

Ownership is recorded where Prefect keeps and shows it through every update:

- a deployment: the tag `reconciler:owner=REPO::FILE` (a `prefect deploy` of the same name
  replaces the tags, and so gives the deployment up: it is then made by hand);
- a work pool or work queue: a last line of its description, `[reconciler:owner=REPO::FILE]`.

The marker is not part of the view: a plan never shows it as a change of tags or descriptions.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from reconciler.model.resources import Kind, Owner, Resource
from reconciler.model.specs import DEPLOYMENT_FIELDS as SPEC_FIELDS
from reconciler.steps.default_pull import CLONE_STEP_ID, GIT_CLONE

OWNER_TAG_PREFIX = "reconciler:owner="
OWNER_LINE_PREFIX = "[reconciler:owner="
_SEPARATOR = "::"

OURS_ONLY = ("flow_path", "triggers", "sensitive_job_variables")
DEPLOYMENT_FIELDS = tuple(k for k in SPEC_FIELDS if k not in OURS_ONLY)
"""What a deployment's view holds: what Prefect stores of it. Our spec's `flow_path`,
`triggers` and `sensitive_job_variables` have no place in Prefect's deployment."""

EMPTY_PARAMETER_SCHEMA = {"type": "object", "properties": {}}


# -- ownership -------------------------------------------------------------------------------


def owner_text(owner: Owner) -> str:
    return f"{owner.repo}{_SEPARATOR}{owner.file}"


def parse_owner(text: str) -> Owner | None:
    repo, sep, file = text.rpartition(_SEPARATOR)
    return Owner(repo, file) if sep and repo and file else None


def owner_tag(owner: Owner) -> str:
    return OWNER_TAG_PREFIX + owner_text(owner)


def owner_of_tags(tags: list[str] | None) -> tuple[Owner | None, list[str]]:
    """The owner recorded in a deployment's tags, and the other tags."""
    owner = None
    rest = []
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(OWNER_TAG_PREFIX):
            owner = owner or parse_owner(tag[len(OWNER_TAG_PREFIX) :])
        else:
            rest.append(tag)
    return owner, rest


def description_with_owner(description: str | None, owner: Owner | None) -> str | None:
    if owner is None:
        return description
    line = f"{OWNER_LINE_PREFIX}{owner_text(owner)}]"
    return f"{description}\n\n{line}" if description else line


def owner_of_description(description: str | None) -> tuple[Owner | None, str | None]:
    """The owner recorded in a pool's or queue's description, and the description without it."""
    if not description:
        return None, description or None
    head, _, last = description.rpartition("\n")
    if not (last.startswith(OWNER_LINE_PREFIX) and last.endswith("]")):
        return None, description
    owner = parse_owner(last[len(OWNER_LINE_PREFIX) : -1])
    rest = head.rstrip("\n") or None
    return owner, rest


# -- views -----------------------------------------------------------------------------------


def desired_view(resource: Resource, commit: str | None) -> Resource:
    """The Prefect view of a desired resource (same key and owner)."""
    spec = resource.spec
    if resource.kind is Kind.DEPLOYMENT:
        view = _deployment_view({**spec, "pull_steps": pinned(spec.get("pull_steps"), commit)})
    elif resource.kind is Kind.WORK_POOL:
        view = _pool_view(spec)
    else:
        view = _queue_view(spec)
    return Resource.of(resource.kind, resource.key, view, resource.owner, resource.source_commit)


def pinned(steps: Any, commit: str | None) -> list[Any]:
    """Pull steps whose clone of the repository checks out `commit`: the generated clone step
    (and any `git_clone` that names neither a branch nor a commit) gets `commit_sha`, which
    Prefect's own `git_clone` fetches and checks out. Prefect's workers therefore run the code
    of the commit that was applied, never a newer head."""
    if not isinstance(steps, list):
        return []
    out = []
    for step in steps:
        if commit and isinstance(step, dict) and len(step) == 1:
            ((name, body),) = step.items()
            if (
                isinstance(body, dict)
                and (name == GIT_CLONE or name.endswith(".git_clone") or name == "git_clone")
                and (
                    body.get("id") == CLONE_STEP_ID
                    or not (body.get("branch") or body.get("commit_sha"))
                )
            ):
                step = {name: {**body, "commit_sha": commit}}
        out.append(step)
    return out


def _deployment_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    view = {key: spec.get(key) for key in DEPLOYMENT_FIELDS}
    view["tags"] = sorted({str(t) for t in view["tags"] or []})
    view["parameters"] = view["parameters"] or {}
    view["job_variables"] = view["job_variables"] or {}
    view["parameter_openapi_schema"] = _parameter_schema(view["parameter_openapi_schema"])
    view["enforce_parameter_schema"] = bool(
        True if spec.get("enforce_parameter_schema") is None else spec["enforce_parameter_schema"]
    )
    view["paused"] = bool(view["paused"])
    view["path"] = view["path"] or None
    view["pull_steps"] = view["pull_steps"] or []
    view["schedules"] = [_schedule_view(s) for s in view["schedules"] or []]
    options = view["concurrency_options"]
    view["concurrency_options"] = (
        {"collision_strategy": options.get("collision_strategy")}
        if isinstance(options, Mapping) and options.get("collision_strategy")
        else None
    )
    if view["concurrency_limit"] is None:
        view["concurrency_options"] = None  # Prefect keeps options only beside a limit
    if view["work_pool_name"] and not view["work_queue_name"]:
        view["work_queue_name"] = "default"
    return view


def _parameter_schema(schema: Any) -> Any:
    """A parameter schema written one way: `prefect deploy` leaves out an empty `definitions`
    and an empty `required`, which our build writes; both mean the same schema."""
    if not schema:
        return EMPTY_PARAMETER_SCHEMA
    if not isinstance(schema, Mapping):
        return schema
    return {k: v for k, v in schema.items() if not (k in ("definitions", "required") and not v)}


def _schedule_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    kind = raw.get("type")
    view: dict[str, Any] = {"type": kind}
    if kind == "cron":
        view.update(cron=raw.get("cron"), day_or=bool(raw.get("day_or", True)))
    elif kind == "interval":
        seconds = raw.get("interval_seconds")
        view.update(interval_seconds=float(seconds) if seconds is not None else None)
        view.update(anchor_date=_instant(raw.get("anchor_date")))
    else:
        view.update(rrule=raw.get("rrule"))
    view["timezone"] = raw.get("timezone") or "UTC"
    view["active"] = bool(raw.get("active", True))
    view["parameters"] = raw.get("parameters") or {}
    view["slug"] = raw.get("slug")
    return view


def _instant(text: Any) -> Any:
    """An ISO instant written one way: `Z` and `+00:00` are the same instant."""
    if not isinstance(text, str):
        return text
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat()


def _pool_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": spec.get("name"),
        "type": spec.get("type") or "process",
        "description": spec.get("description") or None,
        "paused": bool(spec.get("paused")),
        "concurrency_limit": spec.get("concurrency_limit"),
        "base_job_template": spec.get("base_job_template") or {},
    }


def _queue_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    priority = spec.get("priority")
    return {
        "pool": spec.get("pool"),
        "name": spec.get("name"),
        "description": spec.get("description") or None,
        "priority": 1 if priority is None else priority,
        "concurrency_limit": spec.get("concurrency_limit"),
        "paused": bool(spec.get("paused")),
    }


# -- from Prefect ----------------------------------------------------------------------------


def observed_deployment(raw: Mapping[str, Any], flow_name: str) -> Resource:
    owner, tags = owner_of_tags(raw.get("tags"))
    spec = {
        "name": raw.get("name"),
        "flow_name": flow_name,
        # A deployment made through the API may have none: "" keeps every reader of the spec
        # working (the plan reads the pool of every deployment that stays).
        "entrypoint": raw.get("entrypoint") or "",
        "path": raw.get("path"),
        "description": raw.get("description"),
        "version": raw.get("version"),
        "tags": tags,
        "parameters": raw.get("parameters"),
        "parameter_openapi_schema": raw.get("parameter_openapi_schema"),
        "enforce_parameter_schema": raw.get("enforce_parameter_schema"),
        "paused": raw.get("paused"),
        "schedules": [_observed_schedule(s) for s in raw.get("schedules") or []],
        "concurrency_limit": _deployment_limit(raw),
        "concurrency_options": raw.get("concurrency_options"),
        "work_pool_name": raw.get("work_pool_name"),
        "work_queue_name": raw.get("work_queue_name"),
        "job_variables": raw.get("job_variables"),
        "pull_steps": raw.get("pull_steps"),
    }
    key = f"{flow_name}/{raw.get('name')}"
    return Resource.of(Kind.DEPLOYMENT, key, _deployment_view(spec), owner)


def _deployment_limit(raw: Mapping[str, Any]) -> Any:
    limit = raw.get("global_concurrency_limit")
    if isinstance(limit, Mapping) and limit.get("limit") is not None:
        return limit["limit"]
    return raw.get("concurrency_limit")


def _observed_schedule(raw: Mapping[str, Any]) -> dict[str, Any]:
    inner = raw.get("schedule") or {}
    out: dict[str, Any] = {
        "timezone": inner.get("timezone"),
        "active": raw.get("active", True),
        "parameters": raw.get("parameters") or {},
        "slug": raw.get("slug"),
    }
    if "cron" in inner:
        out.update(type="cron", cron=inner["cron"], day_or=inner.get("day_or", True))
    elif "interval" in inner:
        out.update(
            type="interval",
            interval_seconds=inner["interval"],
            anchor_date=inner.get("anchor_date"),
        )
    else:
        out.update(type="rrule", rrule=inner.get("rrule"))
    return _schedule_view(out)


def observed_pool(raw: Mapping[str, Any]) -> Resource:
    owner, description = owner_of_description(raw.get("description"))
    spec = {
        "name": raw.get("name"),
        "type": raw.get("type"),
        "description": description,
        "paused": raw.get("is_paused"),
        "concurrency_limit": raw.get("concurrency_limit"),
        "base_job_template": raw.get("base_job_template"),
    }
    return Resource.of(Kind.WORK_POOL, str(raw.get("name")), _pool_view(spec), owner)


def observed_queue(raw: Mapping[str, Any], pool: str) -> Resource:
    owner, description = owner_of_description(raw.get("description"))
    spec = {
        "pool": pool,
        "name": raw.get("name"),
        "description": description,
        "priority": raw.get("priority"),
        "concurrency_limit": raw.get("concurrency_limit"),
        "paused": raw.get("is_paused"),
    }
    return Resource.of(Kind.WORK_QUEUE, f"{pool}/{raw.get('name')}", _queue_view(spec), owner)


# -- to Prefect ------------------------------------------------------------------------------


def schedule_body(view: Mapping[str, Any]) -> dict[str, Any]:
    kind = view.get("type")
    if kind == "cron":
        inner: dict[str, Any] = {"cron": view["cron"], "day_or": view.get("day_or", True)}
    elif kind == "interval":
        inner = {"interval": view["interval_seconds"]}
        if view.get("anchor_date"):
            inner["anchor_date"] = view["anchor_date"]
    else:
        inner = {"rrule": view["rrule"]}
    inner["timezone"] = view.get("timezone") or "UTC"
    body: dict[str, Any] = {
        "schedule": inner,
        "active": bool(view.get("active", True)),
        "parameters": view.get("parameters") or {},
    }
    if view.get("slug"):
        body["slug"] = view["slug"]
    return body


def deployment_body(view: Mapping[str, Any], owner: Owner | None) -> dict[str, Any]:
    """The fields of a deployment's create or update (without flow_id, name, schedules)."""
    tags = list(view.get("tags") or [])
    if owner is not None:
        tags.append(owner_tag(owner))
    body = {
        "description": view.get("description"),
        "version": view.get("version"),
        "entrypoint": view.get("entrypoint"),
        "path": view.get("path"),
        "tags": tags,
        "parameters": view.get("parameters") or {},
        "parameter_openapi_schema": view.get("parameter_openapi_schema"),
        "enforce_parameter_schema": view.get("enforce_parameter_schema", True),
        "paused": bool(view.get("paused")),
        "concurrency_limit": view.get("concurrency_limit"),
        "concurrency_options": view.get("concurrency_options"),
        "work_pool_name": view.get("work_pool_name"),
        "work_queue_name": view.get("work_queue_name"),
        "job_variables": view.get("job_variables") or {},
        "pull_steps": view.get("pull_steps") or [],
    }
    return body


def pool_body(view: Mapping[str, Any], owner: Owner | None) -> dict[str, Any]:
    body = {
        "description": description_with_owner(view.get("description"), owner),
        "is_paused": bool(view.get("paused")),
        "concurrency_limit": view.get("concurrency_limit"),
    }
    if view.get("base_job_template"):
        body["base_job_template"] = view["base_job_template"]
    return body


def queue_body(view: Mapping[str, Any], owner: Owner | None) -> dict[str, Any]:
    return {
        "description": description_with_owner(view.get("description"), owner),
        "is_paused": bool(view.get("paused")),
        "concurrency_limit": view.get("concurrency_limit"),
        "priority": view.get("priority") or 1,
    }
