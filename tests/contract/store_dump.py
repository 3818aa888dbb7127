"""A store filled with one of everything, and everything read back, through the public Store
API only: the upgrade test (test_store_upgrade.py) compares what a store written by an older
reconciler reads as, after this version opened (and upgraded) it, with what that older
version read.

Run as a script with an older checkout first on the path to make the test data:

    git worktree add /tmp/old 349920d
    PYTHONPATH=/tmp/old .venv/bin/python tests/contract/store_dump.py \\
        tests/data/store-349920d [postgresql://...]

It writes `state.db` (SQLite) and `expected.json` (what that version read of it), and, given
the URL of an empty PostgreSQL database, fills it alike and writes `postgres.sql` (pg_dump)
and `expected-postgres.json`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from reconciler.model.prefect_records import (
    ArtifactRecord,
    EventRecord,
    NewApiRun,
    PrefectLogRecord,
    RunStateUpdate,
    TaskRunRecord,
)
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.model.runs import NewRun, RunState
from reconciler.store import Store, open_store

REPO = "github.com/acme/flows"
NOW = 1_800_000_000.0
TEN_YEARS = 10 * 365 * 86400.0
TASK_RUN = "7d3c1d0e-0000-4000-8000-000000000001"
PLACEHOLDER = "7d3c1d0e-0000-4000-8000-000000000002"
STEP_HASH = "b" * 64


def fill(store: Store) -> None:
    """One of everything a store keeps, as reconciler writes it."""
    pools = Owner(REPO, "work-pools.yaml")
    with store.transaction() as tx:
        tx.put(Resource.of(Kind.WORK_POOL, "etl", pool_spec("etl", 3), pools, "c" * 40))
        tx.put(Resource.of(Kind.WORK_POOL, "adhoc", pool_spec("adhoc", None), None))
        for name, priority, limit in (("default", 1, None), ("urgent", 0, 1)):
            body = {"pool": "etl", "name": name, "priority": priority, "paused": False}
            if limit is not None:
                body["concurrency_limit"] = limit
            tx.put(Resource.of(Kind.WORK_QUEUE, f"etl/{name}", body, pools, "c" * 40))
        tx.put(deployment("hourly", concurrency_limit=2))
        tx.put(deployment("nightly"))
        tx.set_variable("region", "eu-west-1")
        tx.set_variable("limits", {"cpu": 2, "names": ["ä", "🚀"], "on": True, "none": None})
        tx.set_block("secret", "db-password", {"value": "hunter2"})
        tx.record_step_result(STEP_HASH, "build_docker_image", {"image": "acme/etl:1"})
        tx.record_repository(REPO, "https://example.invalid/acme/flows.git", "c" * 40)
        tx.record_plan(plan(1))
    with store.transaction(expected_revision=1) as tx:
        tx.delete(Kind.DEPLOYMENT, "etl/nightly")
        tx.record_plan(plan(2))
    store.put_repo_status("flows", {"state": "Synced", "applied_commit": "c" * 40})
    assert store.acquire_lease("flows", "daemon-a", TEN_YEARS) is None

    store.create_runs(
        NewRun(
            "etl/hourly",
            "etl",
            "etl",
            "default",
            NOW + 3600 * hour,
            {"hour": hour},
            idempotency_key=f"etl/hourly@{hour}",
            schedule_id="every-hour",
        )
        for hour in range(4)
    )
    late = store.create_run(NewRun("etl/hourly", "etl", "etl", "urgent", NOW - 7200))
    store.mark_late_runs(NOW - 3600)
    manual = store.create_run(
        NewRun("etl/hourly", "etl", "etl", "default", NOW - 60, {"hour": -1}, {"image": "x"})
    )
    claimed = store.claim_runs("etl", "worker-1", limit=2, scheduled_before=NOW)
    assert {run.id for run in claimed} == {late.id, manual.id}
    store.set_run_state(late.id, RunState.RUNNING, infrastructure_id="pid-42")
    store.set_run_state(late.id, RunState.COMPLETED, "exited 0", exit_code=0)
    store.append_run_logs(manual.id, [("stdout", "hello"), ("stderr", "wörld")])
    store.heartbeat("etl", "worker-1", 30.0)
    store.heartbeat("adhoc", "worker-2", 5.0)

    flow = store.ensure_prefect_flow("etl")
    assert flow.name == "etl"
    store.apply_flow_run_state(manual.id, running)
    store.update_flow_run_settings(manual.id, flow_version="v1", empirical_policy={"retries": 2})
    store.create_task_run(task(PLACEHOLDER, manual.id, "child-0"))
    store.create_api_run(
        NewApiRun(
            flow_name="child",
            state=RunState.PENDING,
            prefect_state={"type": "PENDING", "name": "Pending", "state_details": {}},
            parameters={"n": 5},
            parent_task_run_id=PLACEHOLDER,
            worker="worker-1",
            empirical_policy={"retries": 0},
            id="7d3c1d0e-0000-4000-8000-000000000003",
        )
    )
    store.record_events(
        [
            task_event(manual.id, "Pending", "2026-05-01T12:00:00+00:00", 1),
            task_event(manual.id, "Running", "2026-05-01T12:00:01+00:00", 2),
            task_event(manual.id, "Completed", "2026-05-01T12:00:03+00:00", 3),
        ]
    )
    store.append_prefect_logs(
        [
            PrefectLogRecord(manual.id, TASK_RUN, "prefect.task_runs", 20, "Finished", stamp(4)),
            PrefectLogRecord(manual.id, None, "prefect.flow_runs", 40, "Oops", stamp(5)),
        ]
    )
    store.create_artifact(
        ArtifactRecord(
            "7d3c1d0e-0000-4000-8000-000000000004",
            "report",
            "markdown",
            "the report",
            "# Done",
            manual.id,
            TASK_RUN,
            stamp(6),
        )
    )


def pool_spec(name: str, limit: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": "process", "paused": False}
    if limit is not None:
        spec["concurrency_limit"] = limit
    return spec


def deployment(name: str, **extra: Any) -> Resource:
    spec = {
        "name": name,
        "flow_name": "etl",
        "entrypoint": "flows/etl.py:etl",
        "work_pool_name": "etl",
        "work_queue_name": "default",
        "paused": False,
        "parameter_openapi_schema": {"type": "object", "properties": {}},
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "/"}}],
        **extra,
    }
    return Resource.of(Kind.DEPLOYMENT, f"etl/{name}", spec, Owner(REPO, "prefect.yaml"), "c" * 40)


def plan(number: int) -> dict[str, Any]:
    return {
        "sources": [{"repo": REPO, "commit": "c" * 40, "ref": "main", "extra": number}],
        "summary": {"create": number, "update": 0, "delete": number - 1},
        "changes": [{"action": "create", "key": f"etl/{number}"}],
    }


def running(run: Any) -> RunStateUpdate:
    return RunStateUpdate(
        state=RunState.RUNNING,
        state_name="Running",
        message=None,
        prefect_state={"id": "s1", "type": "RUNNING", "name": "Running"},
        run_count=run.run_count + 1,
        start_time="2026-05-01T12:00:00+00:00",
        end_time=None,
        history_message="Running",
    )


def task(task_id: str, flow_run_id: str, name: str) -> TaskRunRecord:
    return TaskRunRecord(
        id=task_id,
        flow_run_id=flow_run_id,
        name=name,
        task_key="child-abc",
        dynamic_key="0",
        state_type="PENDING",
        state_name="Pending",
        state_message=None,
        state_timestamp="2026-05-01T12:00:00+00:00",
        start_time=None,
        end_time=None,
        run_count=0,
        cache_hit=False,
        details={"task_inputs": {}},
    )


def task_event(flow_run_id: str, name: str, occurred: str, number: int) -> EventRecord:
    state_type = {"Pending": "PENDING", "Completed": "COMPLETED"}.get(name, "RUNNING")
    return EventRecord(
        id=f"7d3c1d0e-0000-4000-8000-00000000010{number}",
        occurred=occurred,
        event=f"prefect.task-run.{name}",
        resource={
            "prefect.resource.id": f"prefect.task-run.{TASK_RUN}",
            "prefect.resource.name": "add-e57",
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        payload={
            "validated_state": {"type": state_type, "name": name, "message": None},
            "task_run": {"name": "add-e57", "task_key": "add-1", "dynamic_key": "0"},
        },
    )


def stamp(second: int) -> str:
    return f"2026-05-01T12:00:0{second}+00:00"


def plain(value: Any) -> Any:
    """Records as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def resource(found: Resource | None) -> Any:
    if found is None:
        return None
    owner = [found.owner.repo, found.owner.file] if found.owner else None
    return [found.kind.value, found.key, found.spec, owner, found.source_commit, found.hash]


def dump(store: Store) -> dict[str, Any]:
    """Everything the store keeps, read through its API."""
    observed = store.observe()
    runs = store.list_runs(limit=1000)
    task_runs = {run.id: store.task_runs(run.id) for run in runs}
    found: dict[str, Any] = {
        "revision": store.revision(),
        "observed": {
            "revision": observed.revision,
            "resources": sorted(resource(r) for r in observed.resources.values()),
            "variables": plain(dict(observed.variables)),
            "blocks": sorted([*key, value] for key, value in observed.blocks.items()),
        },
        "resources": {  # kinds without objects left out: later versions add kinds
            kind.value: [resource(r) for r in store.list_resources(kind)]
            for kind in Kind
            if store.list_resources(kind)
        },
        "deployment": resource(store.get(Kind.DEPLOYMENT, "etl/hourly")),
        "variables": store.variables(),
        "blocks": plain(store.blocks()),
        "step_result": store.step_result(STEP_HASH),
        "repositories": plain(store.repositories()),
        "repo_statuses": plain(store.repo_statuses()),
        "history": plain(store.history(limit=100)),
        "applied_plans": [plain(store.applied_plan(p.id)) for p in store.history(limit=100)],
        "lease_token": store.lease_token("flows", "daemon-a"),
        "lease_holder": store.acquire_lease("flows", "daemon-b", 1.0),
        "runs": plain(runs),
        "scheduled_ahead": sorted(
            [*key, *value] for key, value in store.scheduled_ahead(0.0).items()
        ),
        "logs": {run.id: plain(store.run_logs(run.id)) for run in runs},
        "warning_logs": {run.id: plain(store.run_logs(run.id, min_level=30)) for run in runs},
        "workers": plain(store.workers()),
        "active_runs": sorted(run.id for run in store.iter_active_runs("worker-1")),
        "prefect_flow": plain(store.prefect_flow_named("etl")),
        "task_runs": plain(task_runs),
        "task_run_states": {
            task.id: plain(store.task_run_states(task.id))
            for tasks in task_runs.values()
            for task in tasks
        },
        "artifacts": {run.id: plain(store.artifacts(run.id)) for run in runs},
    }
    return found


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "state.db"
    for stale in out.glob("state.db*"):
        stale.unlink()
    store = open_store(f"sqlite:///{path}")
    fill(store)
    expected = dump(store)
    store.close()
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    if len(sys.argv) > 2:
        url = sys.argv[2]
        store = open_store(url)
        fill(store)
        expected = dump(store)
        store.close()
        (out / "expected-postgres.json").write_text(
            json.dumps(expected, indent=1, sort_keys=True) + "\n"
        )
        pg_dump = shutil.which("pg_dump") or str(
            sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))[-1]
        )
        done = subprocess.run(
            [pg_dump, "--inserts", "--no-owner", "--no-privileges", "--no-comments", url],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": os.environ.get("PGPASSWORD", "")},
        )
        (out / "postgres.sql").write_text(done.stdout)


if __name__ == "__main__":
    main()
