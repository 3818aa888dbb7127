"""Reads and actions over the store, shared by the REST API (api/) and the dashboard
(dashboard/) (web: request -> store). Plain synchronous calls: the routes run them in
Starlette's thread pool, with one store per thread.

Every read returns JSON-able values. Every action is checked whole before it writes, raises
WebError (status, message, what to do) for a user's mistake with nothing written, and is
recorded in the store's audit log (who, what, on what, the outcome), refusals included.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from reconciler.core.errors import StaleStateError, UserError
from reconciler.model.observed import AppliedPlanRecord, ObservedState
from reconciler.model.resources import Kind, Resource, queue_key
from reconciler.model.runs import FlowRun, NewRun, RunState
from reconciler.model.specs import ScheduleSpec
from reconciler.pools import manual
from reconciler.prefect_api.app import _StorePerThread
from reconciler.prefect_rules.validation import did_you_mean
from reconciler.scheduling.fire_times import fire_times
from reconciler.store.base import Store
from reconciler.store.web_types import RunQuery
from reconciler.web.errors import WebError
from reconciler.web.owner_lines import deployment_line
from reconciler.web.run_requests import RunChecker, RunRequest

SyncNow = Callable[[str], str | None]
"""Ask the daemon for an attempt on a repository now; returns why it cannot, or None."""

PlanRef = Callable[[str, str], dict[str, Any]]
"""The daemon's plan of a ref of a repository (daemon/ref_plans.py); raises UserError."""

RollbackTo = Callable[[str, str], str | None]
"""Ask the daemon to apply an earlier commit of a repository now; why it cannot, or None."""

MAX_PAGE = 500
NEXT_FIRE_TIMES = 5
_EDIT_ATTEMPTS = 5


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def resource_json(resource: Resource) -> dict[str, Any]:
    return {
        "key": resource.key,
        "owner": resource.owner.to_json() if resource.owner else None,
        "source_commit": resource.source_commit,
        "content_hash": resource.hash,
        "spec": resource.spec,
    }


def run_json(run: FlowRun) -> dict[str, Any]:
    data = run.to_json()
    data["scheduled_at"] = iso(run.scheduled_time)
    return data


def plan_summary_json(record: AppliedPlanRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "applied_at": record.applied_at,
        "revision": record.revision,
        "sources": record.sources,
        "summary": record.summary,
    }


def _cursor(run: FlowRun) -> str:
    return f"{run.scheduled_time!r}~{run.id}"


def parse_cursor(text: str) -> tuple[float, str]:
    when, sep, run_id = text.partition("~")
    try:
        if not sep or not run_id:
            raise ValueError(text)
        return float(when), run_id
    except ValueError:
        raise WebError(
            400,
            f"cursor {text!r} is not one this API gave",
            "pass the `next_cursor` of the previous page unchanged, or none for the first page",
        ) from None


class WebService:
    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        sync_now: SyncNow | None = None,
        plan_ref: PlanRef | None = None,
        rollback_to: RollbackTo | None = None,
        git_dir_of: Callable[[str], str | None] | None = None,
    ):
        self._stores = _StorePerThread(open_store)
        self.git_dir_of = git_dir_of
        """The daemon's cache of a remote repository (by the owner it records), for lines."""
        self.sync_now = sync_now
        self.plan_ref = plan_ref
        self.rollback_to = rollback_to
        self._edit_lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self._stores.get()

    def close(self) -> None:
        self._stores.close()

    # -- repositories ----------------------------------------------------------------------

    def repositories(self) -> list[dict[str, Any]]:
        suspended = {s.name: s for s in self.store.suspended_syncs()}
        out = []
        for record in self.store.repo_statuses():
            hold = suspended.get(record.name)
            out.append(
                {
                    **record.status,
                    "name": record.name,
                    "updated_at": record.updated_at,
                    "sync_suspended": hold is not None,
                    "sync_suspended_at": hold.suspended_at if hold else None,
                }
            )
        return out

    def repository(self, name: str, applies: int = 20) -> dict[str, Any]:
        found = next((r for r in self.repositories() if r["name"] == name), None)
        if found is None:
            names = [r["name"] for r in self.repositories()]
            raise WebError(
                404,
                f"no repository {name!r}",
                did_you_mean(name, names) or "GET /api/v1/repositories lists them",
            )
        found["applies"] = [plan_summary_json(p) for p in self._applies_of(found, limit=applies)]
        return found

    def _applies_of(self, status: dict[str, Any], limit: int) -> list[AppliedPlanRecord]:
        wanted = {status.get("source"), status.get("name")}
        commits = {status.get("applied_commit"), status.get("stalled_commit")} - {None}
        mine = []
        for record in self.store.history(limit * 5):
            for source in record.sources:
                if (
                    source.get("location") in wanted
                    or source.get("repo") in wanted
                    or source.get("commit") in commits
                ):
                    mine.append(record)
                    break
        return mine[:limit]

    def applies(self, limit: int) -> list[dict[str, Any]]:
        return [plan_summary_json(p) for p in self.store.history(limit)]

    def applied_plan(self, plan_id: int) -> dict[str, Any]:
        record = self.store.applied_plan(plan_id)
        if record is None:
            raise WebError(404, f"no applied plan {plan_id}", "GET /api/v1/applies lists them")
        return {**plan_summary_json(record), "plan": record.plan}

    def _known_repository(self, name: str) -> None:
        names = [r.name for r in self.store.repo_statuses()]
        if name not in names:
            raise WebError(
                404,
                f"no repository {name!r}",
                did_you_mean(name, names) or "GET /api/v1/repositories lists them",
            )

    def sync(self, name: str, who: str) -> dict[str, Any]:
        self._known_repository(name)
        if self.sync_now is None:
            self._audit(who, "repository.sync", name, {"outcome": "refused: no daemon here"})
            raise WebError(
                409,
                "this server runs no reconcile loop (reconcile server): it cannot sync",
                "ask the daemon that watches this repository (its address, /api/v1/...)",
            )
        problem = self.sync_now(name)
        if problem is not None:
            self._audit(who, "repository.sync", name, {"outcome": f"refused: {problem}"})
            raise WebError(409, problem, "ask the active daemon, or try again shortly")
        self._audit(who, "repository.sync", name, {"outcome": "started"})
        return {"repository": name, "sync": "started"}

    def set_suspended(self, name: str, suspended: bool, who: str) -> dict[str, Any]:
        self._known_repository(name)
        changed = self.store.set_sync_suspended(name, suspended, who)
        action = "repository.suspend" if suspended else "repository.resume"
        self._audit(who, action, name, {"outcome": "done" if changed else "already so"})
        if changed and not suspended and self.sync_now is not None:
            # Catch up at once with what the suspension held back (commits, drift).
            self.sync_now(name)
        return {"repository": name, "sync_suspended": suspended, "changed": changed}

    def plan(self, name: str, ref: str) -> dict[str, Any]:
        """The plan of `ref` of repository `name` against the live store; writes nothing."""
        self._known_repository(name)
        if self.plan_ref is None:
            raise WebError(
                409,
                "this server runs no reconcile loop (reconcile server): it cannot plan a ref",
                "ask the daemon that watches this repository (its address, /api/v1/...)",
            )
        if not ref:
            raise WebError(400, "give the ref to plan", "add ?ref=BRANCH, TAG or COMMIT")
        try:
            return self.plan_ref(name, ref)
        except UserError as exc:
            raise WebError(422, exc.message, exc.hint) from None

    def rollback(self, name: str, target: str, who: str) -> dict[str, Any]:
        """Apply an earlier applied commit of `name` (by commit or applied-plan id) and
        suspend its automatic sync until resumed (Argo CD's rollback)."""
        from reconciler.web.rollback import applied_commit

        self._known_repository(name)
        status = next(r for r in self.repositories() if r["name"] == name)
        try:
            commit = applied_commit(self.store, status, target)
        except WebError as error:
            self._audit(who, "repository.rollback", name, {"outcome": f"refused: {error.message}"})
            raise
        if self.rollback_to is None:
            self._audit(who, "repository.rollback", name, {"outcome": "refused: no daemon here"})
            raise WebError(
                409,
                "this server runs no reconcile loop (reconcile server): it cannot roll back",
                "ask the daemon that watches this repository (its address, /api/v1/...)",
            )
        suspended_now = self.store.set_sync_suspended(name, True, who)
        problem = self.rollback_to(name, commit)
        if problem is not None:
            if suspended_now:
                self.store.set_sync_suspended(name, False, who)
            self._audit(who, "repository.rollback", name, {"outcome": f"refused: {problem}"})
            raise WebError(409, problem, "ask the active daemon, or try again shortly")
        self._audit(who, "repository.rollback", name, {"outcome": "started", "commit": commit})
        return {
            "repository": name,
            "rollback": "started",
            "commit": commit,
            "sync_suspended": True,
        }

    # -- deployments -----------------------------------------------------------------------

    def deployments(self, *, after: str | None, limit: int, search: str | None) -> dict[str, Any]:
        rows = self.store.deployment_page(after=after, limit=limit + 1, search=search)
        page = rows[:limit]
        now = time.time()
        return {
            "deployments": [
                _deployment_row(r, self.store.last_and_next_runs(r.key, now)) for r in page
            ],
            "next_cursor": page[-1].key if len(rows) > limit else None,
        }

    def deployment(self, key: str) -> dict[str, Any]:
        resource = self.store.get(Kind.DEPLOYMENT, key)
        if resource is None:
            known = [r.key for r in self.store.list_resources(Kind.DEPLOYMENT)]
            raise WebError(
                404,
                f"no deployment {key!r}",
                did_you_mean(key, known) or "GET /api/v1/deployments lists them (FLOW/NAME)",
            )
        now = time.time()
        last, upcoming = self.store.last_and_next_runs(key, now)
        spec = resource.deployment_spec()
        owner = resource.owner
        return {
            **resource_json(resource),
            "owner_file": f"{owner.repo}:{owner.file}" if owner else None,
            "owner_line": deployment_line(
                owner.repo,
                resource.source_commit,
                owner.file,
                spec.name,
                self.git_dir_of(owner.repo) if self.git_dir_of else None,
            )
            if owner
            else None,
            "parameter_schema": spec.parameter_openapi_schema,
            "schedules": [_schedule_json(s, now) for s in spec.schedules],
            "last_run": run_json(last) if last else None,
            "next_run": run_json(upcoming) if upcoming else None,
        }

    def create_runs(self, requests: list[RunRequest], who: str) -> dict[str, Any]:
        """Check every request, then create them all in one write (none when one is bad)."""
        checker = RunChecker(self.store)
        new_runs: list[NewRun] = []
        errors: list[dict[str, Any]] = []
        first_problems: list[str] = []
        first_hint: str | None = None
        for index, request in enumerate(requests):
            new, problems, hint = checker.problems(request)
            if new is None and not errors:
                first_problems, first_hint = problems, hint
            if new is None:
                errors.append(
                    {
                        "index": index,
                        "deployment": request.deployment,
                        "problems": problems,
                        "hint": hint,
                    }
                )
            else:
                new_runs.append(new)
        targets = sorted({r.deployment for r in requests})
        target = targets[0] if len(targets) == 1 else f"{len(targets)} deployments"
        if errors:
            self._audit(
                who,
                "run.create",
                target,
                {"outcome": "refused", "requested": len(requests), "errors": len(errors)},
            )
            first = errors[0]
            raise WebError(
                422,
                (
                    f"cannot run {first['deployment']}: {'; '.join(first_problems)}"
                    if len(requests) == 1
                    else f"{len(errors)} of {len(requests)} runs are not valid; none was created"
                ),
                first_hint or "fix the runs listed in `errors`",
                errors=errors,
            )
        if len(new_runs) == 1:
            run = self.store.create_run(new_runs[0])
            self._audit(who, "run.create", run.deployment, {"outcome": "created", "run": run.id})
            return {"created": 1, "runs": [run_json(run)]}
        created = self.store.create_runs(new_runs)
        self._audit(
            who,
            "run.create",
            target,
            {"outcome": "created", "requested": len(new_runs), "created": created},
        )
        return {"created": created, "requested": len(new_runs)}

    # -- runs ------------------------------------------------------------------------------

    def runs(self, query: RunQuery) -> dict[str, Any]:
        page = self.store.query_runs(
            RunQuery(
                deployment=query.deployment,
                states=query.states,
                scheduled_after=query.scheduled_after,
                scheduled_before=query.scheduled_before,
                after=query.after,
                limit=query.limit + 1,
            )
        )
        more = len(page) > query.limit
        page = page[: query.limit]
        return {
            "flow_runs": [run_json(r) for r in page],
            "next_cursor": _cursor(page[-1]) if more and page else None,
        }

    def run(self, run_id: str) -> FlowRun:
        """By id, or by a unique prefix of at least 4 characters (as the CLI takes them)."""
        found = self.store.get_run(run_id)
        if found is not None:
            return found
        matches = self.store.find_runs(run_id) if len(run_id) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise WebError(404, f"{run_id!r} matches several flow runs", "give more of the id")
        raise WebError(404, f"no flow run {run_id!r}", "GET /api/v1/flow-runs lists them")

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        run_id = self.run(run_id).id
        return [
            {
                "id": t.id,
                "name": t.name,
                "task_key": t.task_key,
                "state_type": t.state_type,
                "state_name": t.state_name,
                "state_message": t.state_message,
                "start_time": t.start_time,
                "end_time": t.end_time,
                "run_count": t.run_count,
                "cache_hit": t.cache_hit,
            }
            for t in self.store.task_runs(run_id)
        ]

    def logs(self, run_id: str, after: int, min_level: int | None) -> list[dict[str, Any]]:
        return [
            {
                "seq": line.seq,
                "at": line.at,
                "stream": line.stream,
                "line": line.line,
                "level": line.level,
                "logger": line.logger,
            }
            for line in self.store.run_logs(run_id, after=after, min_level=min_level)
        ]

    def cancel(self, run_id: str, who: str) -> dict[str, Any]:
        run = self.run(run_id)
        if run.state.is_final:
            self._audit(who, "run.cancel", run.id, {"outcome": f"refused: {run.state.value}"})
            raise WebError(
                409,
                f"flow run {run.id} already ended {run.state.value}",
                "there is nothing to cancel",
            )
        after = self.store.cancel_run(run.id)
        state = after.state.value if after else run.state.value
        self._audit(who, "run.cancel", run.id, {"outcome": state})
        return {"flow_run": run.id, "state": state}

    def runs_by_hour(self, hours: int = 24) -> dict[str, Any]:
        now = time.time()
        start = (now // 3600 + 1 - hours) * 3600
        buckets = self.store.run_buckets(start, hours)
        return {
            "start": iso(start),
            "hours": [
                {"hour": iso(start + 3600 * h), "states": buckets.counts.get(h, {})}
                for h in range(hours)
            ],
        }

    # -- pools, queues, workers ------------------------------------------------------------

    def work_pools(self) -> list[dict[str, Any]]:
        queues = self.store.list_resources(Kind.WORK_QUEUE)
        workers = self.store.workers()
        active = self._active_counts()
        now = time.time()
        return [
            {
                **resource_json(pool),
                "queues": [resource_json(q) for q in queues if q.queue_spec().pool == pool.key],
                "workers": [_worker_json(w, now) for w in workers if w.pool == pool.key],
                "runs_in_flight": active.get(pool.key, {}),
            }
            for pool in self.store.list_resources(Kind.WORK_POOL)
        ]

    def work_pool(self, name: str) -> dict[str, Any]:
        for pool in self.work_pools():
            if pool["key"] == name:
                return pool
        known = [r.key for r in self.store.list_resources(Kind.WORK_POOL)]
        raise WebError(
            404,
            f"no work pool {name!r}",
            did_you_mean(name, known) or "GET /api/v1/work-pools lists them",
        )

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [_worker_json(w, now) for w in self.store.workers()]

    def _active_counts(self) -> dict[str, dict[str, int]]:
        return self.store.runs_in_flight()

    def pause_pool(self, name: str, paused: bool, who: str) -> dict[str, Any]:
        action = "pause" if paused else "resume"

        def decide(observed: ObservedState) -> manual.Edit:
            try:
                return manual.update_pool(observed, name, {"paused": paused}, action)
            except UserError as exc:
                raise _as_web_error(exc) from None

        message = self._edit(decide, who, f"work-pool.{action}", name)
        return {"work_pool": name, "paused": paused, "message": message}

    def pause_queue(self, pool: str, name: str, paused: bool, who: str) -> dict[str, Any]:
        action = "pause" if paused else "resume"
        key = queue_key(pool, name)

        def decide(observed: ObservedState) -> manual.Edit:
            try:
                queue = manual.find_queue(observed, name, pool)
                return manual.update_queue(observed, queue, {"paused": paused}, action)
            except UserError as exc:
                raise _as_web_error(exc) from None

        message = self._edit(decide, who, f"work-queue.{action}", key)
        return {"work_queue": key, "paused": paused, "message": message}

    def _edit(
        self, decide: Callable[[ObservedState], manual.Edit], who: str, action: str, target: str
    ) -> str:
        for _ in range(_EDIT_ATTEMPTS):
            observed = self.store.observe()
            try:
                edit = decide(observed)
            except WebError as error:
                self._audit(who, action, target, {"outcome": f"refused: {error.message}"})
                raise
            if edit.writes:
                try:
                    with self.store.transaction(expected_revision=observed.revision) as tx:
                        for resource in edit.puts:
                            tx.put(resource)
                        for kind, key in edit.deletes:
                            tx.delete(kind, key)
                except StaleStateError:
                    continue
            self._audit(who, action, target, {"outcome": edit.message})
            return edit.message
        raise WebError(503, "the store kept changing under this action", "try it again")

    # -- variables, secrets, audit ---------------------------------------------------------

    def variables(self) -> list[dict[str, Any]]:
        return [{"name": k, "value": v} for k, v in sorted(self.store.variables().items())]

    def secrets(self) -> list[dict[str, Any]]:
        """Names only: a secret's value never leaves the store through the web."""
        return [{"type": b.type_slug, "name": b.name} for b in self.store.blocks()]

    def audit(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.store.audit_log(limit=limit, before=before)]

    # -- events ----------------------------------------------------------------------------

    def events(self, event: str | None, resource: str | None, limit: int) -> list[Any]:
        from reconciler.store.run_events import list_events

        found = list_events(self.store, event=event, resource=resource, limit=limit)
        return [stored.to_json() for stored in found]

    def post_events(self, raw: list[Any], who: str) -> dict[str, Any]:
        """Store the events (all or none, one write), audited."""
        from reconciler.model.prefect_records import utc_now_iso
        from reconciler.prefect_rules.triggers import EventShapeError, event_from_json
        from reconciler.store.run_events import record_events

        now = utc_now_iso()
        try:
            events = [event_from_json(item, now=now) for item in raw]
        except EventShapeError as exc:
            raise WebError(422, str(exc), "send Prefect's event shape (docs/triggers.md)") from None
        record_events(self.store, events)
        self._audit(who, "events.post", f"{len(events)} events", {"ids": [e.id for e in events]})
        return {"stored": len(events), "ids": [e.id for e in events]}

    def _audit(self, who: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.store.record_audit(who, action, target, detail)


def _as_web_error(exc: UserError) -> WebError:
    text = exc.message
    status = 404 if "not found" in text or "does not exist" in text or "no " in text[:3] else 409
    return WebError(status, text, exc.hint)


def _deployment_row(resource: Resource, runs: tuple[FlowRun | None, ...]) -> dict[str, Any]:
    spec = resource.deployment_spec()
    last, upcoming = runs
    return {
        "key": resource.key,
        "flow_name": spec.flow_name,
        "work_pool": spec.work_pool_name,
        "work_queue": spec.work_queue_name,
        "paused": spec.paused,
        "schedules": len(spec.schedules),
        "owner": resource.owner.to_json() if resource.owner else None,
        "source_commit": resource.source_commit,
        "last_run": _brief_run(last),
        "next_run": _brief_run(upcoming),
    }


def _brief_run(run: FlowRun | None) -> dict[str, Any] | None:
    """A run in a list: enough to show and to follow (id, name, state, when; ISO 8601 UTC)."""
    if run is None:
        return None
    return {
        "id": run.id,
        "name": run.name,
        "state": run.state.value,
        "scheduled_at": iso(run.scheduled_time),
    }


def _schedule_json(schedule: ScheduleSpec, now: float) -> dict[str, Any]:
    after = datetime.datetime.fromtimestamp(now, datetime.UTC)
    upcoming: list[str] = []
    problem = None
    try:
        for moment in fire_times(schedule, after, deadline=time.monotonic() + 0.5):
            upcoming.append(moment.isoformat(timespec="seconds"))
            if len(upcoming) >= NEXT_FIRE_TIMES:
                break
    except Exception as exc:  # a schedule too slow to search, or one the store holds badly
        problem = str(exc)
    return {
        "schedule": dict(schedule.raw),
        "active": schedule.active,
        "next_fire_times": upcoming,
        "problem": problem,
    }


def _worker_json(worker: Any, now: float) -> dict[str, Any]:
    return {
        "pool": worker.pool,
        "name": worker.name,
        "online": worker.is_online(now),
        "last_heartbeat": iso(worker.heartbeat_at),
        "heartbeat_seconds": worker.heartbeat_interval,
        "started_at": worker.started_at,
    }


def states_of(values: Iterable[str]) -> tuple[RunState, ...]:
    out = []
    for value in values:
        try:
            out.append(RunState(value.upper()))
        except ValueError:
            raise WebError(
                400,
                f"{value!r} is not a flow-run state",
                "use one of " + ", ".join(s.value for s in RunState),
            ) from None
    return tuple(out)
