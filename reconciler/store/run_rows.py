"""How a flow run is laid out in a store's `flow_runs` table, shared by the backends: the
column list, the state sets as SQL, and a row turned back into a FlowRun."""

from __future__ import annotations

import datetime
import json
from typing import Any

from reconciler.runs import ACTIVE_STATES, WAITING_STATES, FlowRun, RunState, StateChange

RUN_COLUMNS = (
    "id, name, deployment, flow_name, pool, queue, state, state_message, scheduled_time, "
    "parameters, job_variables, worker, infrastructure_id, exit_code, created_at, updated_at, "
    "history, idempotency_key, schedule_id"
)
ACTIVE_SQL = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE_STATES))
"""PENDING, RUNNING, CANCELLING: the states that hold a slot, as an SQL list."""
WAITING_SQL = ", ".join(f"'{state.value}'" for state in sorted(WAITING_STATES))
"""SCHEDULED, LATE: the states a claim takes, as an SQL list."""


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
    )
