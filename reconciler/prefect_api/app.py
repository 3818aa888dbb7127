"""The Prefect-compatible API a flow run talks to: the slice of Prefect 3's REST API and event
stream that Prefect's client, flow engine and task engine use while a run executes
(../shared/research/prefect-run-api.md), served from our store.

`create_prefect_api()` makes a Starlette app with routes relative to its mount point (it is
mounted at `/prefect/api`, so `PREFECT_API_URL=http://HOST:PORT/prefect/api`). Flow-run
states go through Prefect's orchestration rules (orchestration.py); task runs arrive as events
(events.py); our records become Prefect's JSON in schemas.py.

Access: with a `token`, every route but /health and /admin/version wants
`Authorization: Bearer TOKEN` (Prefect's client sends PREFECT_API_KEY so) or HTTP Basic with
TOKEN as the password (PREFECT_API_AUTH_STRING="user:TOKEN", which is also what the event
websockets' auth frame carries) and answers 401 otherwise. A request about a run for which
`may_access(run)` is false gets 403. Routes we do not serve answer 404 `{"detail":"Not Found"}`
as Prefect's server does, so a client degrades instead of hanging.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from reconciler.model.prefect_records import (
    ArtifactRecord,
    EventRecord,
    FlowRunFilter,
    NewApiRun,
    PrefectLogRecord,
    TaskRunRecord,
    utc_now_iso,
)
from reconciler.model.resources import Kind
from reconciler.model.runs import FlowRun, RunState
from reconciler.prefect_api import schemas
from reconciler.prefect_api.access import RequireToken, token_checker
from reconciler.prefect_api.events import EventWriter, events_in, events_out
from reconciler.prefect_api.orchestration import Orchestration, initial_state, orchestrate
from reconciler.store.base import Store

T = TypeVar("T")


class ApiError(HTTPException):
    """An error answered as Prefect's server does: `{"detail": ...}` with the status."""


class _StorePerThread:
    """One store per thread: requests run in a thread pool, and a store's connection is
    used by one thread at a time."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        self._open_store = open_store
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._open_store()
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            store.close()


class PrefectApi:
    """The routes' state: how to reach the store, who may touch which run, the event writer."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        may_access: Callable[[FlowRun], bool],
        allow_adhoc_runs: bool,
        token: str | None,
        server_version: str,
    ) -> None:
        self.stores = _StorePerThread(open_store)
        self.may_access = may_access
        self.allow_adhoc_runs = allow_adhoc_runs
        self.token_ok = token_checker(token)
        self.server_version = server_version
        self.events = EventWriter(open_store)

    def close(self) -> None:
        """Write the events still queued and close every store this API opened."""
        self.events.close()
        self.stores.close()

    async def db(self, call: Callable[[Store], T]) -> T:
        """Run `call` with this thread's store in the thread pool."""
        return await run_in_threadpool(lambda: call(self.stores.get()))

    # -- access ----------------------------------------------------------------------------

    def _accessible_run(self, store: Store, run_id: str) -> FlowRun:
        run = store.get_run(run_id)
        if run is None:
            raise ApiError(404, "Flow run not found")
        if not self.may_access(run):
            raise ApiError(
                403,
                f"flow run {run_id} is not served here: this API serves only the runs of its "
                "own worker (and their subflows)",
            )
        return run

    async def run_allowed(self, run_id: str) -> bool:
        def check(store: Store) -> bool:
            run = store.get_run(run_id)
            return run is not None and self.may_access(run)

        return await self.db(check)

    # -- routes ----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse(True)

    async def version(self, request: Request) -> Response:
        return JSONResponse(self.server_version)

    async def storage(self, request: Request) -> Response:
        return JSONResponse({"default_result_storage_block_id": None})

    async def create_flow(self, request: Request) -> Response:
        body = await _json_object(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "a flow needs a name")
        flow = await self.db(lambda store: store.ensure_prefect_flow(name))
        return JSONResponse(schemas.flow_json(flow), status_code=201)

    async def read_flow(self, request: Request) -> Response:
        flow_id = request.path_params["id"]
        flow = await self.db(lambda store: store.prefect_flow(flow_id))
        if flow is None:
            raise ApiError(404, "Flow not found")
        return JSONResponse(schemas.flow_json(flow))

    async def create_flow_run(self, request: Request) -> Response:
        body = await _json_object(request)

        def create(store: Store) -> FlowRun:
            flow = store.prefect_flow(str(body.get("flow_id")))
            if flow is None:
                raise ApiError(404, "Flow not found: create it first (POST /flows/)")
            worker: str | None = None
            parent_task_run_id = body.get("parent_task_run_id")
            if parent_task_run_id:
                parent_task = store.get_task_run(str(parent_task_run_id))
                if parent_task is None or parent_task.flow_run_id is None:
                    raise ApiError(404, f"parent task run {parent_task_run_id} not found")
                worker = self._accessible_run(store, parent_task.flow_run_id).worker
            elif not self.allow_adhoc_runs:
                raise ApiError(
                    403,
                    "ad hoc flow runs are not allowed on this API: run flows through a "
                    "deployment (`reconcile deployment run`)",
                )
            run_id = str(uuid.uuid4())
            state = initial_state(body.get("state") or {"type": "PENDING"}, run_id)
            return store.create_api_run(
                NewApiRun(
                    id=run_id,
                    flow_name=flow.name,
                    state=RunState.RUNNING if state["type"] == "RUNNING" else RunState.PENDING,
                    prefect_state=state,
                    parameters=dict(body.get("parameters") or {}),
                    name=body.get("name") or None,
                    parent_task_run_id=str(parent_task_run_id) if parent_task_run_id else None,
                    worker=worker,
                    empirical_policy=body.get("empirical_policy"),
                    flow_version=body.get("flow_version"),
                )
            )

        run = await self.db(create)
        return JSONResponse(schemas.flow_run_json(run, body.get("tags")), status_code=201)

    async def read_flow_run(self, request: Request) -> Response:
        run_id = request.path_params["id"]

        def read(store: Store) -> dict[str, Any]:
            run = self._accessible_run(store, run_id)
            store.ensure_prefect_flow(run.flow_name)  # GET /flows/{flow_id} must find it
            tags = self._tags_of(store, run)
            return schemas.flow_run_json(run, tags)

        return JSONResponse(await self.db(read))

    def _tags_of(self, store: Store, run: FlowRun) -> list[str]:
        if not run.deployment:
            return []
        deployment = store.get(Kind.DEPLOYMENT, run.deployment)
        return list(deployment.deployment_spec().tags) if deployment else []

    async def update_flow_run(self, request: Request) -> Response:
        run_id = request.path_params["id"]
        body = await _json_object(request)

        def update(store: Store) -> None:
            self._accessible_run(store, run_id)
            policy = body.get("empirical_policy")
            store.update_flow_run_settings(
                run_id,
                flow_version=body.get("flow_version"),
                empirical_policy=policy if isinstance(policy, dict) else None,
            )

        await self.db(update)
        return Response(status_code=204)

    async def set_flow_run_state(self, request: Request) -> Response:
        run_id = request.path_params["id"]
        body = await _json_object(request)
        proposed = body.get("state")
        if not isinstance(proposed, dict) or not proposed.get("type"):
            raise ApiError(422, "set_state needs a state with a type")

        def apply(store: Store) -> Orchestration:
            self._accessible_run(store, run_id)
            decided: list[Orchestration] = []

            def decide(run: FlowRun) -> Any:
                decided.append(orchestrate(run, proposed))
                return decided[-1].update

            after = store.apply_flow_run_state(run_id, decide)
            if after is None:
                raise ApiError(404, "Flow run not found")
            if decided[-1].update is not None and after.parent_task_run_id:
                mirror_to_parent_task(store, after)
            return decided[-1]

        result = await self.db(apply)
        return JSONResponse(result.response(), status_code=201)

    async def filter_flow_runs(self, request: Request) -> Response:
        body = await _json_object(request, allow_empty=True)
        wanted = _flow_run_filter(body)

        def read(store: Store) -> list[dict[str, Any]]:
            runs = [run for run in store.filter_flow_runs(wanted) if self.may_access(run)]
            return [schemas.flow_run_json(run) for run in runs]

        return JSONResponse(await self.db(read))

    async def create_task_run(self, request: Request) -> Response:
        body = await _json_object(request)
        flow_run_id = body.get("flow_run_id")
        proposed = body.get("state") or {"type": "PENDING", "name": "Pending"}
        task_run_id = str(body.get("id") or uuid.uuid4())
        now = utc_now_iso()
        state = {
            "id": str(uuid.uuid4()),
            "type": proposed.get("type", "PENDING"),
            "name": proposed.get("name") or "Pending",
            "timestamp": now,
            "message": proposed.get("message"),
            "data": None,
            "state_details": {
                **(proposed.get("state_details") or {}),
                "task_run_id": task_run_id,
                "flow_run_id": flow_run_id,
            },
        }

        def create(store: Store) -> TaskRunRecord:
            if flow_run_id:
                self._accessible_run(store, str(flow_run_id))
            elif not self.allow_adhoc_runs:
                raise ApiError(403, "a task run outside a flow run is not allowed on this API")
            details: dict[str, Any] = {
                key: body.get(key)
                for key in ("name", "task_key", "dynamic_key", "tags", "task_inputs")
                if key in body
            }
            return store.create_task_run(
                TaskRunRecord(
                    id=task_run_id,
                    flow_run_id=str(flow_run_id) if flow_run_id else None,
                    name=str(body.get("name") or ""),
                    task_key=str(body.get("task_key") or ""),
                    dynamic_key=str(body.get("dynamic_key") or ""),
                    state_type=state["type"],
                    state_name=state["name"],
                    state_message=state["message"],
                    state_timestamp=now,
                    start_time=None,
                    end_time=None,
                    run_count=0,
                    cache_hit=False,
                    details={**details, "state": state},
                )
            )

        task = await self.db(create)
        return JSONResponse(
            schemas.task_run_json(task, task.details.get("state") or state), status_code=201
        )

    async def read_deployment(self, request: Request) -> Response:
        wanted = request.path_params["id"]

        def read(store: Store) -> dict[str, Any] | None:
            for resource in store.list_resources(Kind.DEPLOYMENT):
                if schemas.deployment_id(resource.key) == wanted:
                    return schemas.deployment_json(resource)
            return None

        found = await self.db(read)
        if found is None:
            raise ApiError(404, "Deployment not found")
        return JSONResponse(found)

    async def read_work_pool(self, request: Request) -> Response:
        name = request.path_params["name"]
        pool = await self.db(lambda store: store.get(Kind.WORK_POOL, name))
        return JSONResponse(schemas.work_pool_json(name, pool.pool_spec() if pool else None))

    async def read_work_queue(self, request: Request) -> Response:
        wanted = request.path_params["id"]

        def read(store: Store) -> dict[str, Any] | None:
            for queue in store.list_resources(Kind.WORK_QUEUE):
                spec = queue.queue_spec()
                if schemas.work_queue_id(spec.pool, spec.name) == wanted:
                    return schemas.work_queue_json(spec.pool, spec.name, spec)
            for pool in store.list_resources(Kind.WORK_POOL):  # a pool's implicit default
                if schemas.work_queue_id(pool.key, "default") == wanted:
                    return schemas.work_queue_json(pool.key, "default", None)
            return None

        found = await self.db(read)
        if found is None:
            raise ApiError(404, "Work queue not found")
        return JSONResponse(found)

    async def read_variable(self, request: Request) -> Response:
        name = request.path_params["name"]
        variables = await self.db(lambda store: store.variables())
        if name not in variables:
            raise ApiError(404, "Variable not found")
        return JSONResponse(schemas.variable_json(name, variables[name]))

    async def read_block_document(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        name = request.path_params["name"]
        include_secrets = request.query_params.get("include_secrets", "").lower() == "true"
        blocks = await self.db(lambda store: store.blocks())
        for block in blocks:
            if block.type_slug == slug and block.name == name:
                return JSONResponse(
                    schemas.block_document_json(block, include_secrets=include_secrets)
                )
        raise ApiError(404, "Block document not found")

    async def create_logs(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, list):
            raise ApiError(422, "logs are a JSON list")
        records = [record for record in map(_log_record, body) if record is not None]

        def write(store: Store) -> None:
            known: list[PrefectLogRecord] = []
            for run_id in sorted({record.flow_run_id for record in records}):
                run = store.get_run(run_id)
                if run is None:
                    continue  # not a run of ours: nothing to attach the lines to
                if not self.may_access(run):
                    self._accessible_run(store, run_id)  # raises the 403
                known.extend(record for record in records if record.flow_run_id == run_id)
            store.append_prefect_logs(known)

        await self.db(write)
        return Response(status_code=201)

    async def create_artifact(self, request: Request) -> Response:
        body = await _json_object(request)

        def create(store: Store) -> ArtifactRecord:
            flow_run_id = body.get("flow_run_id")
            task_run_id = body.get("task_run_id")
            if not flow_run_id and task_run_id:
                task = store.get_task_run(str(task_run_id))
                flow_run_id = task.flow_run_id if task else None
            if flow_run_id:
                self._accessible_run(store, str(flow_run_id))
            elif not self.allow_adhoc_runs:
                raise ApiError(403, "an artifact outside a flow run is not allowed on this API")
            return store.create_artifact(
                ArtifactRecord(
                    id=str(uuid.uuid4()),
                    key=body.get("key"),
                    type=body.get("type"),
                    description=body.get("description"),
                    data=body.get("data"),
                    flow_run_id=str(flow_run_id) if flow_run_id else None,
                    task_run_id=str(task_run_id) if task_run_id else None,
                    created_at=utc_now_iso(),
                )
            )

        artifact = await self.db(create)
        return JSONResponse(schemas.artifact_json(artifact), status_code=201)

    async def events_in(self, websocket: WebSocket) -> None:
        await events_in(websocket, self.events, self.token_ok, self.run_allowed)

    async def events_out(self, websocket: WebSocket) -> None:
        await events_out(websocket, self.token_ok)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(422, "the request body is not JSON") from None


async def _json_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not await request.body():
        return {}
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object")
    return body


def _any_of(section: Any, *path: str) -> tuple[str, ...] | None:
    for key in path:
        if not isinstance(section, dict):
            return None
        section = section.get(key)
    if section is None:
        return None
    return tuple(str(item) for item in section)


def _flow_run_filter(body: dict[str, Any]) -> FlowRunFilter:
    runs = body.get("flow_runs") or {}
    limit = body.get("limit")
    return FlowRunFilter(
        ids=_any_of(runs, "id", "any_"),
        parent_task_run_ids=_any_of(runs, "parent_task_run_id", "any_"),
        state_types=_any_of(runs, "state", "type", "any_"),
        state_names=_any_of(runs, "state", "name", "any_"),
        newest_first=str(body.get("sort") or "EXPECTED_START_TIME_DESC").endswith("DESC"),
        limit=int(limit) if isinstance(limit, int) and limit > 0 else 200,
    )


def _log_record(item: Any) -> PrefectLogRecord | None:
    if not isinstance(item, dict) or not item.get("flow_run_id"):
        return None
    try:
        return PrefectLogRecord(
            flow_run_id=str(item["flow_run_id"]),
            task_run_id=str(item["task_run_id"]) if item.get("task_run_id") else None,
            logger=str(item.get("name") or ""),
            level=int(item.get("level") or 0),
            message=str(item.get("message") or ""),
            timestamp=str(item.get("timestamp") or utc_now_iso()),
        )
    except (TypeError, ValueError):
        return None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def create_prefect_api(
    open_store: Callable[[], Store],
    *,
    may_access: Callable[[FlowRun], bool],
    allow_adhoc_runs: bool,
    token: str | None,
    server_version: str = "3.9.1",
) -> Starlette:
    """The Prefect API app. `open_store` opens a store (called once per thread that serves
    requests, and once for the event writer); `may_access(run)` says whether a caller may
    read or move that run; `allow_adhoc_runs` lets clients create runs that are no
    deployment's nor subflow (a flow called by hand); `token`, when set, is required.
    `app.state.prefect_api.close()` writes pending events and closes the stores."""
    api = PrefectApi(
        open_store,
        may_access=may_access,
        allow_adhoc_runs=allow_adhoc_runs,
        token=token,
        server_version=server_version,
    )
    routes: list[Route | WebSocketRoute] = [
        Route("/health", api.health, methods=["GET"]),
        Route("/admin/version", api.version, methods=["GET"]),
        Route("/admin/storage", api.storage, methods=["GET"]),
        Route("/flows/", api.create_flow, methods=["POST"]),
        Route("/flows/{id}", api.read_flow, methods=["GET"]),
        Route("/flow_runs/", api.create_flow_run, methods=["POST"]),
        Route("/flow_runs/filter", api.filter_flow_runs, methods=["POST"]),
        Route("/flow_runs/{id}", api.read_flow_run, methods=["GET"]),
        Route("/flow_runs/{id}", api.update_flow_run, methods=["PATCH"]),
        Route("/flow_runs/{id}/set_state", api.set_flow_run_state, methods=["POST"]),
        Route("/task_runs/", api.create_task_run, methods=["POST"]),
        Route("/deployments/{id}", api.read_deployment, methods=["GET"]),
        Route("/work_pools/{name}", api.read_work_pool, methods=["GET"]),
        Route("/work_queues/{id}", api.read_work_queue, methods=["GET"]),
        Route("/variables/name/{name}", api.read_variable, methods=["GET"]),
        Route(
            "/block_types/slug/{slug}/block_documents/name/{name}",
            api.read_block_document,
            methods=["GET"],
        ),
        Route("/logs/", api.create_logs, methods=["POST"]),
        Route("/artifacts/", api.create_artifact, methods=["POST"]),
        WebSocketRoute("/events/in", api.events_in),
        WebSocketRoute("/events/out", api.events_out),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False  # Prefect's paths are exact: /flow_runs/ID/ is a 404
    app.add_middleware(RequireToken, token_ok=api.token_ok)
    app.state.prefect_api = api
    return app


def mirror_to_parent_task(store: Store, subflow: FlowRun) -> None:
    """A subflow's state becomes the state of the task run that stands for it in its parent
    (as Prefect's server does): the parent's client never updates that task run itself."""
    placeholder = store.get_task_run(subflow.parent_task_run_id or "")
    state = subflow.prefect_state or {}
    if placeholder is None or not state.get("type"):
        return
    name = str(state.get("name") or str(state["type"]).title())
    related = []
    if placeholder.flow_run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{placeholder.flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    event = EventRecord(
        id=str(uuid.uuid4()),
        occurred=str(state.get("timestamp") or utc_now_iso()),
        event=f"prefect.task-run.{name}",
        resource={
            "prefect.resource.id": f"prefect.task-run.{placeholder.id}",
            "prefect.resource.name": placeholder.name,
            "prefect.state-type": state["type"],
            "prefect.state-name": name,
        },
        related=related,
        payload={
            "validated_state": {
                "type": state["type"],
                "name": name,
                "message": state.get("message"),
            },
            "task_run": {
                **placeholder.details,
                "name": placeholder.name,
                "task_key": placeholder.task_key,
                "dynamic_key": placeholder.dynamic_key,
                "start_time": subflow.start_time,
                "end_time": subflow.end_time,
                "run_count": subflow.run_count,
            },
        },
    )
    store.record_events([event])
