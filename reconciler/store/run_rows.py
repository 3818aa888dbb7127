"""How a flow run is laid out in a store's `flow_runs` table, shared by the backends: the
column list, the state sets as SQL, and a row turned back into a FlowRun."""

from __future__ import annotations

import datetime
import json
from typing import Any

from reconciler.model.runs import ACTIVE_STATES, WAITING_STATES, FlowRun, RunState, StateChange

INSERT_COLUMNS = (
    "id, name, deployment, flow_name, pool, queue, state, state_message, scheduled_time, "
    "parameters, job_variables, worker, infrastructure_id, exit_code, created_at, updated_at, "
    "history, idempotency_key, schedule_id"
)
"""What creating a run writes; Prefect's columns below start at their defaults."""
PREFECT_COLUMNS = (
    "state_name, run_count, parent_task_run_id, prefect_state, empirical_policy, flow_version, "
    "start_time, end_time"
)
RUN_COLUMNS = f"{INSERT_COLUMNS}, {PREFECT_COLUMNS}"
"""Every column of a run, in the order run_from_row reads them."""
STATE_RESET_SQL = "state_name = NULL, prefect_state = NULL"
"""A move made by reconciler itself (claim, cancel, crash) outdates Prefect's view of the state."""
ACTIVE_SQL = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE_STATES))
"""PENDING, RUNNING, CANCELLING: the states that hold a slot, as an SQL list."""
WAITING_SQL = ", ".join(f"'{state.value}'" for state in sorted(WAITING_STATES))
"""SCHEDULED, LATE: the states a claim takes, as an SQL list."""


WORKER_OF_RUN_SQL = "w.name = r.worker AND (w.pool = r.pool OR r.pool = '')"
"""Joins a run `r` to its worker `w`: a run made through the Prefect API (a subflow) has no
pool, and belongs to its parent's worker in whatever pool that worker serves."""
HAS_WORKER_SQL = "NOT (r.pool = '' AND r.worker IS NULL)"
"""An ad hoc run (made through the API, by no worker's run) is no worker's to crash."""


def freshest_beat_per_run(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per run (the first column) from a WORKER_OF_RUN_SQL join: a pool-less run
    joins every pool's worker of that name, and the latest heartbeat is the one that counts."""
    best: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        kept = best.get(row[0])
        if kept is None or (row[2] is not None and (kept[2] is None or row[2] > kept[2])):
            best[row[0]] = row
    return list(best.values())


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def run_from_row(row: tuple[Any, ...]) -> FlowRun:
    """A row of RUN_COLUMNS as a FlowRun."""
    history = tuple(
        StateChange(RunState(item["state"]), item["at"], item.get("message"))
        for item in json.loads(row[16])
    )
    return FlowRun(
        id=row[0],
        name=row[1],
        deployment=row[2],
        flow_name=row[3],
        pool=row[4],
        queue=row[5],
        state=RunState(row[6]),
        state_message=row[7],
        scheduled_time=row[8],
        parameters=json.loads(row[9]),
        job_variables=json.loads(row[10]),
        worker=row[11],
        infrastructure_id=row[12],
        exit_code=row[13],
        created_at=row[14],
        updated_at=row[15],
        history=history,
        idempotency_key=row[17],
        schedule_id=row[18],
        state_name=row[19],
        run_count=int(row[20] or 0),
        parent_task_run_id=row[21],
        prefect_state=json.loads(row[22]) if row[22] else None,
        empirical_policy=json.loads(row[23]) if row[23] else None,
        flow_version=row[24],
        start_time=row[25],
        end_time=row[26],
    )
