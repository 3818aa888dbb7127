"""The Prefect-records part of the store contract (PrefectRecordStore in
reconciler/store/base.py), for every backend: flows by name, runs made through the Prefect
API, orchestrated state changes that never interleave, events kept once with task runs
newest-wins, Prefect's log records, artifacts."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

from reconciler.model.prefect_records import (
    ArtifactRecord,
    EventRecord,
    FlowRunFilter,
    NewApiRun,
    PrefectLogRecord,
    RunStateUpdate,
    TaskRunRecord,
    prefect_flow_id,
)
from reconciler.model.runs import FlowRun, NewRun, RunState
from reconciler.store import Store
from tests.contract.backends import Backend, run_in_threads
from tests.contract.test_runs_contract import setup_pool

PENDING = {"type": "PENDING", "name": "Pending", "state_details": {}}


def claimed_run(store: Store, worker: str = "w1") -> FlowRun:
    setup_pool(store)
    made = store.create_run(NewRun("flow/dep", "flow", "etl", "default", time.time() - 5))
    (claimed,) = store.claim_runs("etl", worker, limit=1, scheduled_before=time.time())
    assert claimed.id == made.id
    return claimed


def placeholder(store: Store, flow_run_id: str, key: str = "0") -> TaskRunRecord:
    return store.create_task_run(
        TaskRunRecord(
            id=str(uuid.uuid4()),
            flow_run_id=flow_run_id,
            name=f"child-{key}",
            task_key="child-abc",
            dynamic_key=key,
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
    )


def subflow(store: Store, parent: FlowRun, **fields: Any) -> FlowRun:
    task = placeholder(store, parent.id)
    return store.create_api_run(
        NewApiRun(
            flow_name="child",
            state=RunState.PENDING,
            prefect_state=PENDING,
            parameters={"n": 5},
            parent_task_run_id=task.id,
            worker=parent.worker,
            empirical_policy={"retries": 0},
            **fields,
        )
    )


def task_event(
    task_run_id: str,
    flow_run_id: str,
    name: str,
    occurred: str,
    *,
    run_count: int = 1,
    event_id: str | None = None,
) -> EventRecord:
    state_type = {"Pending": "PENDING", "Completed": "COMPLETED", "Cached": "COMPLETED"}.get(
        name, "RUNNING"
    )
    return EventRecord(
        id=event_id or str(uuid.uuid4()),
        occurred=occurred,
        event=f"prefect.task-run.{name}",
        resource={
            "prefect.resource.id": f"prefect.task-run.{task_run_id}",
            "prefect.resource.name": "add-e57",
            "prefect.state-name": name,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        payload={
            "validated_state": {"type": state_type, "name": name, "message": None},
            "task_run": {
                "name": "add-e57",
                "task_key": "add-3507bdff",
                "dynamic_key": "0",
                "run_count": run_count,
                "start_time": "2026-05-01T12:00:01Z" if name != "Pending" else None,
                "end_time": "2026-05-01T12:00:03Z" if name in ("Completed", "Cached") else None,
            },
        },
    )


def test_a_prefect_flow_is_made_once_per_name_with_a_stable_id(store: Store) -> None:
    first = store.ensure_prefect_flow("etl")
    again = store.ensure_prefect_flow("etl")

    assert first == again and first.id == prefect_flow_id("etl")
    assert store.prefect_flow(first.id) == first
    assert store.prefect_flow_named("etl") == first
    assert store.ensure_prefect_flow("other").id != first.id
    assert store.prefect_flow(str(uuid.uuid4())) is None


def test_a_subflow_run_is_poolless_held_by_its_parents_worker_and_never_claimed(
    store: Store,
) -> None:
    parent = claimed_run(store)
    child = subflow(store, parent, flow_version="v1")

    assert (child.deployment, child.pool, child.queue) == ("", "", "")
    assert (child.worker, child.state, child.state_name) == ("w1", RunState.PENDING, "Pending")
    assert child.made_through_api and child.parameters == {"n": 5}
    assert child.flow_version == "v1" and child.empirical_policy == {"retries": 0}
    assert store.get_run(child.id) == child
    assert store.claim_runs("etl", "w2", limit=10, scheduled_before=time.time() + 60) == []

    by_parent = FlowRunFilter(parent_task_run_ids=(child.parent_task_run_id or "",), limit=1)
    assert store.filter_flow_runs(by_parent) == [child]
    assert store.filter_flow_runs(FlowRunFilter(parent_task_run_ids=("nope",))) == []
    both = FlowRunFilter(ids=(child.id, parent.id), state_types=("PENDING",))
    assert store.filter_flow_runs(both) == [child, parent]  # newest scheduled first
    assert store.filter_flow_runs(FlowRunFilter(ids=(child.id,), state_names=("Running",))) == []


def test_an_orchestrated_change_is_written_with_its_history(store: Store) -> None:
    run = claimed_run(store)
    seen: list[FlowRun] = []

    def decide(current: FlowRun) -> RunStateUpdate:
        seen.append(current)
        return RunStateUpdate(
            state=RunState.RUNNING,
            state_name="Running",
            message=None,
            prefect_state={"id": "s1", "type": "RUNNING", "name": "Running"},
            run_count=current.run_count + 1,
            start_time="2026-05-01T12:00:00+00:00",
            end_time=None,
            history_message="Running",
        )

    moved = store.apply_flow_run_state(run.id, decide)

    assert seen == [run]
    assert moved is not None and moved == store.get_run(run.id)
    assert (moved.state, moved.state_name, moved.run_count) == (RunState.RUNNING, "Running", 1)
    assert moved.prefect_state == {"id": "s1", "type": "RUNNING", "name": "Running"}
    assert moved.start_time == "2026-05-01T12:00:00+00:00"
    assert [(c.state, c.message) for c in moved.history][-1] == (RunState.RUNNING, "Running")
    assert store.apply_flow_run_state(run.id, lambda current: None) == moved
    assert store.apply_flow_run_state("no-such-run", decide) is None


def test_two_proposals_for_one_run_never_interleave(backend: Backend, store: Store) -> None:
    run = claimed_run(store)

    def count_once(current: FlowRun) -> RunStateUpdate:
        return RunStateUpdate(
            state=RunState.RUNNING,
            state_name="Running",
            message=None,
            prefect_state={"type": "RUNNING", "name": "Running"},
            run_count=current.run_count + 1,
            start_time=None,
            end_time=None,
            history_message="Running",
        )

    def proposer() -> None:
        mine = backend.open()
        for _ in range(5):
            mine.apply_flow_run_state(run.id, count_once)

    failures = run_in_threads(*(proposer for _ in range(4)))

    assert failures == []
    final = store.get_run(run.id)
    assert final is not None and final.run_count == 20  # no update was lost
    assert len(final.history) == len(run.history) + 20


def test_a_move_by_reconciler_itself_outdates_prefects_state_name(store: Store) -> None:
    run = claimed_run(store)
    store.apply_flow_run_state(
        run.id,
        lambda current: RunStateUpdate(
            RunState.RUNNING,
            "Running",
            None,
            {"type": "RUNNING", "name": "Running"},
            1,
            None,
            None,
            "Running",
        ),
    )

    cancelling = store.cancel_run(run.id)

    assert cancelling is not None and cancelling.state is RunState.CANCELLING
    assert (cancelling.state_name, cancelling.prefect_state) == (None, None)
    assert cancelling.run_count == 1


def test_flow_version_and_retry_policy_are_kept(store: Store) -> None:
    run = claimed_run(store)

    assert store.update_flow_run_settings(
        run.id, flow_version="abc", empirical_policy={"retries": 2}
    )
    assert store.update_flow_run_settings(run.id, flow_version=None)
    found = store.get_run(run.id)
    assert found is not None
    assert (found.flow_version, found.empirical_policy) == ("abc", {"retries": 2})
    assert not store.update_flow_run_settings("no-such-run", flow_version="x")


def test_events_are_kept_once_and_task_runs_newest_wins(store: Store) -> None:
    run = claimed_run(store)
    task_id = str(uuid.uuid4())
    pending = task_event(task_id, run.id, "Pending", "2026-05-01T12:00:00.100000Z")
    running = task_event(task_id, run.id, "Running", "2026-05-01T12:00:01Z")
    retrying = task_event(task_id, run.id, "Retrying", "2026-05-01T12:00:02+00:00", run_count=2)
    completed = task_event(task_id, run.id, "Completed", "2026-05-01T12:00:03Z", run_count=2)

    store.record_events([completed, pending])  # out of order, as .map() sends them
    store.record_events([running, retrying, completed, running])  # repeats after a reconnect

    (task,) = store.task_runs(run.id)
    assert (task.id, task.flow_run_id, task.name) == (task_id, run.id, "add-e57")
    assert (task.state_type, task.state_name, task.run_count) == ("COMPLETED", "Completed", 2)
    assert task.retries_used == 1 and not task.cache_hit
    assert task.start_time is not None and task.end_time is not None
    assert store.get_task_run(task_id) == task
    states = store.task_run_states(task_id)
    assert [state.name for state in states] == ["Pending", "Running", "Retrying", "Completed"]
    assert [state.type for state in states][-1] == "COMPLETED"


def test_a_cached_task_run_is_a_cache_hit(store: Store) -> None:
    run = claimed_run(store)
    task_id = str(uuid.uuid4())
    store.record_events([task_event(task_id, run.id, "Cached", "2026-05-01T12:00:03Z")])

    (task,) = store.task_runs(run.id)
    assert task.cache_hit and task.state_name == "Cached"


def test_a_subflow_placeholder_task_run_is_made_once(store: Store) -> None:
    run = claimed_run(store)
    task = placeholder(store, run.id)

    assert store.create_task_run(dataclasses.replace(task, name="other")) == task
    assert store.task_runs(run.id) == [task]
    assert task.details == {"task_inputs": {}}


def test_prefect_log_records_follow_the_process_output_with_their_level(store: Store) -> None:
    run = claimed_run(store)
    store.append_run_logs(run.id, [("stdout", "plain line")])
    store.append_prefect_logs(
        [
            PrefectLogRecord(
                run.id, None, "prefect.flow_runs", logging.INFO, "Beginning", "2026-05-01T12:00:00Z"
            ),
            PrefectLogRecord(
                run.id, "t1", "prefect.task_runs", logging.ERROR, "boom", "2026-05-01T12:00:01Z"
            ),
        ]
    )
    store.append_run_logs(run.id, [("stderr", "after")])

    lines = store.run_logs(run.id)
    assert [(line.seq, line.stream, line.line, line.level) for line in lines] == [
        (1, "stdout", "plain line", None),
        (2, "prefect", "Beginning", logging.INFO),
        (3, "prefect", "boom", logging.ERROR),
        (4, "stderr", "after", None),
    ]
    assert lines[1].logger == "prefect.flow_runs"
    assert lines[1].at.startswith("2026-05-01T12:00:00")
    assert [line.line for line in store.run_logs(run.id, min_level=logging.WARNING)] == ["boom"]
    assert [line.line for line in store.run_logs(run.id, after=2)] == ["boom", "after"]


def test_artifacts_are_kept_per_run(store: Store) -> None:
    run = claimed_run(store)
    made = store.create_artifact(
        ArtifactRecord(
            str(uuid.uuid4()),
            "report",
            "markdown",
            "the report",
            "# Hi",
            run.id,
            None,
            "2026-05-01T12:00:00+00:00",
        )
    )

    assert store.artifacts(run.id) == [made]
    assert store.artifacts("other-run") == []


def test_a_dead_workers_subflows_crash_with_its_runs_and_ad_hoc_runs_are_nobodys(
    store: Store,
) -> None:
    store.heartbeat("etl", "w1", 0.01)
    parent = claimed_run(store)
    child = subflow(store, parent)
    ad_hoc = store.create_api_run(
        NewApiRun(flow_name="by-hand", state=RunState.PENDING, prefect_state=PENDING)
    )
    time.sleep(0.1)

    crashed = store.crash_orphaned_runs(missed_beats=3)

    assert set(crashed) == {parent.id, child.id}
    assert ad_hoc.id not in crashed


def test_a_live_workers_subflow_is_not_crashed(store: Store) -> None:
    store.heartbeat("etl", "w1", 60)
    parent = claimed_run(store)
    child = subflow(store, parent)

    assert store.crash_orphaned_runs(missed_beats=3) == []
    assert set(store.crash_orphaned_runs(worker="w1")) == {parent.id, child.id}
