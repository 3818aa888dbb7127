"""The REST API's endpoints, relative to /api/v1 (web: HTTP -> service.py).

Every endpoint is one `Endpoint` of ENDPOINTS: its method, path, query parameters, body
schema, whether it is an action (admin token) and a summary. The Starlette routes and the
OpenAPI document (openapi.py) are both made from that table, so they cannot disagree.

Errors are JSON, `{"error", "hint", "status"}` (errors.py); unknown paths and methods too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from reconciler.store.web_types import RunQuery
from reconciler.web.api import bodies
from reconciler.web.auth import Role, Tokens, actor, bearer_token, require_admin
from reconciler.web.errors import WebError, error_response, json_response
from reconciler.web.run_requests import run_request
from reconciler.web.service import MAX_PAGE, WebService, parse_cursor, run_json, states_of

LOG_POLL_SECONDS = 0.25
STREAM_KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "integer", "number", "string", "array"
    description: str
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: str
    summary: str
    action: bool = False
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    tag: str = ""
    responses: dict[int, str] = field(default_factory=dict)


LIMIT = Param("limit", "integer", "Page size.", 1, MAX_PAGE, 50)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/repositories",
        "repositories",
        "Watched repositories and their sync state",
        tag="repositories",
    ),
    Endpoint(
        "GET",
        "/repositories/{name}",
        "repository",
        "One repository: state, commit, last error, next attempt, drift, its applies",
        tag="repositories",
    ),
    Endpoint(
        "POST",
        "/repositories/{name}/sync",
        "sync",
        "Sync the repository now",
        True,
        tag="repositories",
    ),
    Endpoint(
        "POST",
        "/repositories/{name}/suspend",
        "suspend",
        "Suspend the repository's automatic sync (sync now still works)",
        True,
        tag="repositories",
    ),
    Endpoint(
        "POST",
        "/repositories/{name}/resume",
        "resume",
        "Resume the repository's automatic sync",
        True,
        tag="repositories",
    ),
    Endpoint(
        "GET",
        "/repositories/{name}/plan",
        "plan",
        "Plan any ref of the repository (a pull request's branch) against the live store; "
        "writes nothing",
        params=(Param("ref", "string", "Branch, tag, refs/pull/N/head or commit id to plan."),),
        tag="repositories",
    ),
    Endpoint(
        "POST",
        "/repositories/{name}/rollback",
        "rollback",
        "Apply an earlier applied commit and suspend the automatic sync until resumed",
        True,
        body=bodies.ROLLBACK_BODY,
        tag="repositories",
    ),
    Endpoint(
        "GET",
        "/applies",
        "applies",
        "Applied plans, newest first",
        params=(LIMIT,),
        tag="repositories",
    ),
    Endpoint(
        "GET",
        "/applies/{id}",
        "applied_plan",
        "One applied plan with its full plan",
        tag="repositories",
    ),
    Endpoint(
        "GET",
        "/deployments",
        "deployments",
        "Deployments by key, a page at a time",
        params=(
            LIMIT,
            Param("cursor", "string", "`next_cursor` of the previous page."),
            Param("search", "string", "Only keys containing this text."),
        ),
        tag="deployments",
    ),
    Endpoint(
        "GET",
        "/deployments/{key}",
        "deployment",
        "One deployment: spec, owner file, parameter schema, schedules with their next "
        "fire times, last and next run",
        tag="deployments",
    ),
    Endpoint(
        "POST",
        "/deployments/{key}/runs",
        "create_run",
        "Create a run of the deployment (parameters checked against its schema)",
        True,
        body=bodies.RUN_BODY,
        tag="flow-runs",
    ),
    Endpoint(
        "POST",
        "/flow-runs",
        "create_runs",
        "Create many runs in one request, in one write: all or none",
        True,
        body=bodies.BULK_RUNS_BODY,
        tag="flow-runs",
    ),
    Endpoint(
        "GET",
        "/flow-runs",
        "runs",
        "Flow runs, newest scheduled first, a page at a time",
        params=(
            LIMIT,
            Param("cursor", "string", "`next_cursor` of the previous page."),
            Param("deployment", "string", "Only runs of FLOW/NAME."),
            Param("state", "array", "Only runs in these states (repeat the parameter)."),
            Param("scheduled_after", "number", "Scheduled at or after (epoch seconds)."),
            Param("scheduled_before", "number", "Scheduled before (epoch seconds)."),
        ),
        tag="flow-runs",
    ),
    Endpoint(
        "GET",
        "/flow-runs/by-hour",
        "runs_by_hour",
        "Runs of the last 24 hours, counted by hour and state",
        tag="flow-runs",
    ),
    Endpoint(
        "GET", "/flow-runs/{id}", "run", "One flow run with its state history", tag="flow-runs"
    ),
    Endpoint(
        "POST", "/flow-runs/{id}/cancel", "cancel", "Cancel a flow run", True, tag="flow-runs"
    ),
    Endpoint(
        "GET", "/flow-runs/{id}/task-runs", "task_runs", "The run's task runs", tag="flow-runs"
    ),
    Endpoint(
        "GET",
        "/flow-runs/{id}/logs",
        "logs",
        "The run's log lines after `after`",
        params=(
            Param("after", "integer", "Last line number already read.", 0, None, 0),
            Param("min_level", "integer", "Only Prefect records at or above.", 0, 100),
        ),
        tag="flow-runs",
    ),
    Endpoint(
        "GET",
        "/flow-runs/{id}/logs/stream",
        "log_stream",
        "Server-sent events: each log line as it arrives (`log`), then `end` with the final state",
        params=(Param("after", "integer", "Start after this line.", 0),),
        tag="flow-runs",
    ),
    Endpoint(
        "GET",
        "/work-pools",
        "work_pools",
        "Work pools with their queues and workers",
        tag="work-pools",
    ),
    Endpoint("GET", "/work-pools/{name}", "work_pool", "One work pool", tag="work-pools"),
    Endpoint(
        "POST",
        "/work-pools/{name}/pause",
        "pause_pool",
        "Pause a hand-made pool",
        True,
        tag="work-pools",
    ),
    Endpoint(
        "POST",
        "/work-pools/{name}/resume",
        "resume_pool",
        "Resume a hand-made pool",
        True,
        tag="work-pools",
    ),
    Endpoint(
        "POST",
        "/work-pools/{pool}/queues/{name}/pause",
        "pause_queue",
        "Pause a hand-made queue",
        True,
        tag="work-pools",
    ),
    Endpoint(
        "POST",
        "/work-pools/{pool}/queues/{name}/resume",
        "resume_queue",
        "Resume a hand-made queue",
        True,
        tag="work-pools",
    ),
    Endpoint("GET", "/workers", "workers", "Workers: online, last heartbeat", tag="work-pools"),
    Endpoint("GET", "/variables", "variables", "Variables with their values", tag="values"),
    Endpoint(
        "GET", "/secrets", "secrets", "Secret blocks: type and name, never the value", tag="values"
    ),
    Endpoint(
        "GET",
        "/audit-log",
        "audit_log",
        "Actions taken through the API and dashboard",
        params=(LIMIT, Param("before", "integer", "Only entries with a smaller id.", 1)),
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/events",
        "events",
        "Events, newest first: flow-run state changes, emitted, posted and webhook events",
        params=(
            LIMIT,
            Param("event", "string", "Only events with this name (`*` matches any text)."),
            Param("resource", "string", "Only events about this resource id (`*` too)."),
        ),
        tag="events",
    ),
    Endpoint(
        "POST",
        "/events",
        "post_events",
        "Store events (Prefect's shape); deployment triggers react to them",
        True,
        body=bodies.EVENTS_BODY,
        tag="events",
    ),
    Endpoint("GET", "/openapi.json", "openapi", "This document", tag="meta"),
)


def _starlette_path(path: str) -> str:
    """Deployment keys hold a slash (FLOW/NAME): `{key}` takes it."""
    return path.replace("{key}", "{key:path}")


class Api:
    def __init__(self, service: WebService, tokens: Tokens, openapi: dict[str, Any]) -> None:
        self.service = service
        self.tokens = tokens
        self.openapi_document = openapi

    def routes(self) -> list[Route]:
        # Fixed paths before templated ones (/flow-runs/by-hour before /flow-runs/{id}).
        ordered = sorted(ENDPOINTS, key=lambda e: ("{" in e.path, -e.path.count("/")))
        return [
            Route(
                _starlette_path(e.path),
                self._wrap(e, getattr(self, e.handler)),
                methods=[e.method],
                name=e.handler,
            )
            for e in ordered
        ]

    def _wrap(
        self, endpoint: Endpoint, handler: Callable[[Request, Role], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            try:
                role = self.tokens.role_of(bearer_token(request))
                if endpoint.action:
                    require_admin(role, self.tokens)
                return await handler(request, role)
            except WebError as error:
                return error_response(error)

        return route

    async def _db(self, call: Callable[[], Any]) -> Any:
        return await run_in_threadpool(call)

    def _who(self, request: Request, role: Role) -> str:
        return actor(role, request, "api")

    # -- repositories ----------------------------------------------------------------------

    async def repositories(self, request: Request, role: Role) -> Response:
        return json_response({"repositories": await self._db(self.service.repositories)})

    async def repository(self, request: Request, role: Role) -> Response:
        name = request.path_params["name"]
        return json_response(await self._db(lambda: self.service.repository(name)))

    async def sync(self, request: Request, role: Role) -> Response:
        name, who = request.path_params["name"], self._who(request, role)
        return json_response(await self._db(lambda: self.service.sync(name, who)), 202)

    async def suspend(self, request: Request, role: Role) -> Response:
        name, who = request.path_params["name"], self._who(request, role)
        return json_response(await self._db(lambda: self.service.set_suspended(name, True, who)))

    async def resume(self, request: Request, role: Role) -> Response:
        name, who = request.path_params["name"], self._who(request, role)
        return json_response(await self._db(lambda: self.service.set_suspended(name, False, who)))

    async def plan(self, request: Request, role: Role) -> Response:
        name, ref = request.path_params["name"], request.query_params.get("ref", "")
        return json_response(await self._db(lambda: self.service.plan(name, ref)))

    async def rollback(self, request: Request, role: Role) -> Response:
        name, who = request.path_params["name"], self._who(request, role)
        body = await bodies.read_json(request, bodies.ROLLBACK_BODY)
        target = str(body["to"])
        return json_response(await self._db(lambda: self.service.rollback(name, target, who)), 202)

    async def applies(self, request: Request, role: Role) -> Response:
        limit = _int(request, LIMIT)
        return json_response({"applies": await self._db(lambda: self.service.applies(limit))})

    async def applied_plan(self, request: Request, role: Role) -> Response:
        plan_id = _path_int(request, "id")
        return json_response(await self._db(lambda: self.service.applied_plan(plan_id)))

    # -- deployments -----------------------------------------------------------------------

    async def deployments(self, request: Request, role: Role) -> Response:
        limit = _int(request, LIMIT)
        after = request.query_params.get("cursor") or None
        search = request.query_params.get("search") or None
        return json_response(
            await self._db(
                lambda: self.service.deployments(after=after, limit=limit, search=search)
            )
        )

    async def deployment(self, request: Request, role: Role) -> Response:
        key = request.path_params["key"]
        return json_response(await self._db(lambda: self.service.deployment(key)))

    async def create_run(self, request: Request, role: Role) -> Response:
        key = request.path_params["key"]
        body = await bodies.read_json(request, bodies.RUN_BODY)
        wanted = run_request(body, deployment=key)
        who = self._who(request, role)
        result = await self._db(lambda: self.service.create_runs([wanted], who))
        return json_response(result["runs"][0], 201)

    async def events(self, request: Request, role: Role) -> Response:
        params = request.query_params
        wanted = (params.get("event"), params.get("resource"), _int(request, LIMIT))
        return json_response({"events": await self._db(lambda: self.service.events(*wanted))})

    async def post_events(self, request: Request, role: Role) -> Response:
        body = await bodies.read_json(request, bodies.EVENTS_BODY)
        who = self._who(request, role)
        stored = await self._db(lambda: self.service.post_events(body["events"], who))
        return json_response(stored, 201)

    async def create_runs(self, request: Request, role: Role) -> Response:
        body = await bodies.read_json(request, bodies.BULK_RUNS_BODY)
        wanted = [run_request(item) for item in body["runs"]]
        who = self._who(request, role)
        return json_response(await self._db(lambda: self.service.create_runs(wanted, who)), 201)

    # -- runs ------------------------------------------------------------------------------

    async def runs(self, request: Request, role: Role) -> Response:
        params = request.query_params
        query = RunQuery(
            deployment=params.get("deployment") or None,
            states=states_of(params.getlist("state")),
            scheduled_after=_float(request, "scheduled_after"),
            scheduled_before=_float(request, "scheduled_before"),
            after=parse_cursor(params["cursor"]) if params.get("cursor") else None,
            limit=_int(request, LIMIT),
        )
        return json_response(await self._db(lambda: self.service.runs(query)))

    async def runs_by_hour(self, request: Request, role: Role) -> Response:
        return json_response(await self._db(self.service.runs_by_hour))

    async def run(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]
        return json_response(run_json(await self._db(lambda: self.service.run(run_id))))

    async def cancel(self, request: Request, role: Role) -> Response:
        run_id, who = request.path_params["id"], self._who(request, role)
        return json_response(await self._db(lambda: self.service.cancel(run_id, who)), 202)

    async def task_runs(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]
        return json_response({"task_runs": await self._db(lambda: self.service.task_runs(run_id))})

    async def logs(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]
        after = _int(request, Param("after", "integer", "", 0, None, 0))
        min_level = _optional_int(request, "min_level", 0, 100)

        def read() -> list[dict[str, Any]]:
            return self.service.logs(self.service.run(run_id).id, after, min_level)

        return json_response({"logs": await self._db(read)})

    async def log_stream(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]
        start = _int(request, Param("after", "integer", "", 0, None, 0))
        run = await self._db(lambda: self.service.run(run_id))
        return StreamingResponse(
            self.follow_logs(request, run.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def follow_logs(self, request: Request, run_id: str, start: int) -> AsyncIterator[str]:
        """Server-sent events: `log` per line, `state` when it changes, `end` at the end."""
        seen, state, quiet = start, None, 0.0
        yield "retry: 2000\n\n"
        while True:
            run, lines = await self._db(partial(self._run_and_logs, run_id, seen))
            for line in lines:
                seen = line["seq"]
                yield f"id: {seen}\nevent: log\ndata: {json.dumps(line)}\n\n"
            if run.state.value != state:
                state = run.state.value
                yield f"event: state\ndata: {json.dumps({'state': state})}\n\n"
            if run.state.is_final and not lines:
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(LOG_POLL_SECONDS)
            quiet = 0.0 if lines else quiet + LOG_POLL_SECONDS
            if quiet >= STREAM_KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keep-alive\n\n"

    def _run_and_logs(self, run_id: str, after: int) -> tuple[Any, list[dict[str, Any]]]:
        return self.service.run(run_id), self.service.logs(run_id, after, None)

    # -- pools -----------------------------------------------------------------------------

    async def work_pools(self, request: Request, role: Role) -> Response:
        return json_response({"work_pools": await self._db(self.service.work_pools)})

    async def work_pool(self, request: Request, role: Role) -> Response:
        name = request.path_params["name"]
        return json_response(await self._db(lambda: self.service.work_pool(name)))

    async def pause_pool(self, request: Request, role: Role) -> Response:
        return await self._pool(request, role, True)

    async def resume_pool(self, request: Request, role: Role) -> Response:
        return await self._pool(request, role, False)

    async def _pool(self, request: Request, role: Role, paused: bool) -> Response:
        name, who = request.path_params["name"], self._who(request, role)
        return json_response(await self._db(lambda: self.service.pause_pool(name, paused, who)))

    async def pause_queue(self, request: Request, role: Role) -> Response:
        return await self._queue(request, role, True)

    async def resume_queue(self, request: Request, role: Role) -> Response:
        return await self._queue(request, role, False)

    async def _queue(self, request: Request, role: Role, paused: bool) -> Response:
        pool, name = request.path_params["pool"], request.path_params["name"]
        who = self._who(request, role)
        return json_response(
            await self._db(lambda: self.service.pause_queue(pool, name, paused, who))
        )

    async def workers(self, request: Request, role: Role) -> Response:
        return json_response({"workers": await self._db(self.service.workers)})

    # -- values, audit, meta ---------------------------------------------------------------

    async def variables(self, request: Request, role: Role) -> Response:
        return json_response({"variables": await self._db(self.service.variables)})

    async def secrets(self, request: Request, role: Role) -> Response:
        return json_response({"secrets": await self._db(self.service.secrets)})

    async def audit_log(self, request: Request, role: Role) -> Response:
        limit = _int(request, LIMIT)
        before = _optional_int(request, "before", 1, None)
        return json_response({"entries": await self._db(lambda: self.service.audit(limit, before))})

    async def openapi(self, request: Request, role: Role) -> Response:
        return json_response(self.openapi_document)


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return error_response(
            WebError(405, f"{request.method} is not taken here", "see /api/v1/openapi.json")
        )
    return error_response(
        WebError(
            404,
            f"no such endpoint: {request.url.path}",
            "the endpoints are listed in /api/v1/openapi.json",
        )
    )


def _int(request: Request, param: Param) -> int:
    value = _optional_int(request, param.name, param.minimum, param.maximum)
    return int(param.default) if value is None else value


def _optional_int(
    request: Request, name: str, minimum: int | None, maximum: int | None
) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise WebError(
            400, f"{name}={text!r} is not a whole number", f"give {name} as digits"
        ) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"{minimum if minimum is not None else '...'}..{maximum if maximum else '...'}"
        raise WebError(400, f"{name}={value} is out of range", f"give {name} in {bounds}")
    return value


def _float(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise WebError(
            400, f"{name}={text!r} is not a number", f"give {name} in seconds since the epoch"
        ) from None


def _path_int(request: Request, name: str) -> int:
    text = request.path_params[name]
    if not text.isdigit():
        raise WebError(404, f"no applied plan {text!r}", "plan ids are whole numbers")
    return int(text)
