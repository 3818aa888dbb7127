"""Flow runs: the records a worker claims and executes, and the states they move through.

    SCHEDULED ──claim──► PENDING ──process/container started──► RUNNING ──► COMPLETED
        │                  │                                       ├──────► FAILED   (exit != 0)
        │                  └──► CRASHED (infrastructure could not start; worker died)
        └──cancel──► CANCELLED        RUNNING ──cancel──► CANCELLING ──► CANCELLED

A SCHEDULED run not started within a grace period after its time is LATE (still claimable,
unless the daemon is set to skip late runs: then CANCELLED). Final states never change again.
A run is claimed by exactly one worker (the store's claim is
atomic), and limits count PENDING and RUNNING runs (as Prefect's do), CANCELLING too, since its
process still runs until the worker stops it.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any


class RunState(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    LATE = "LATE"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}
)
ACTIVE_STATES = frozenset({RunState.PENDING, RunState.RUNNING, RunState.CANCELLING})
"""States that hold a concurrency slot and belong to a worker."""
WAITING_STATES = frozenset({RunState.SCHEDULED, RunState.LATE})
"""States a worker can claim: LATE is SCHEDULED past its grace period (Prefect's "Late")."""


def new_run_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewRun:
    """What creating a run needs: the rest is filled in by the store."""

    deployment: str
    flow_name: str
    pool: str
    queue: str
    scheduled_time: float
    parameters: dict[str, Any] = field(default_factory=dict)
    job_variables: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    idempotency_key: str | None = None
    """A run with the same key is not created twice (the scheduler's guard)."""
    schedule_id: str | None = None
    """Set for runs the scheduler made (auto-scheduled): which schedule made it."""
    state_message: str | None = None
    """The message of its first (SCHEDULED) state: what made it, e.g. a trigger's event."""


@dataclass(frozen=True)
class StateChange:
    state: RunState
    at: str
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "at": self.at, "message": self.message}


@dataclass(frozen=True)
class FlowRun:
    id: str
    name: str
    deployment: str
    flow_name: str
    pool: str
    queue: str
    state: RunState
    state_message: str | None
    scheduled_time: float
    parameters: dict[str, Any]
    job_variables: dict[str, Any]
    worker: str | None
    infrastructure_id: str | None
    exit_code: int | None
    created_at: str
    updated_at: str
    history: tuple[StateChange, ...]
    idempotency_key: str | None = None
    schedule_id: str | None = None
    # What Prefect's engine reported through our Prefect API (reconciler/prefect_api):
    state_name: str | None = None
    """Prefect's name of the state ("Running", "AwaitingRetry", "TimedOut"...), when it said."""
    run_count: int = 0
    """How many times Prefect's engine moved the run into Running (retries make it more)."""
    parent_task_run_id: str | None = None
    """For a subflow: the parent's task run that stands for it (the parent run owns it)."""
    prefect_state: dict[str, Any] | None = None
    """The last Prefect state the API accepted, as Prefect's JSON (id, type, name...)."""
    empirical_policy: dict[str, Any] | None = None
    flow_version: str | None = None
    start_time: str | None = None
    end_time: str | None = None

    @property
    def made_through_api(self) -> bool:
        """A subflow or ad hoc run: no deployment, pool or queue; no claim ever counts it."""
        return self.deployment == ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "deployment": self.deployment,
            "flow_name": self.flow_name,
            "work_pool": self.pool,
            "work_queue": self.queue,
            "state": self.state.value,
            "state_message": self.state_message,
            "scheduled_time": self.scheduled_time,
            "parameters": self.parameters,
            "job_variables": self.job_variables,
            "worker": self.worker,
            "infrastructure_id": self.infrastructure_id,
            "exit_code": self.exit_code,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": [change.to_json() for change in self.history],
            "auto_scheduled": self.schedule_id is not None,
            "schedule_id": self.schedule_id,
            "state_name": self.state_name,
            "run_count": self.run_count,
            "parent_task_run_id": self.parent_task_run_id,
            "flow_version": self.flow_version,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }


@dataclass(frozen=True)
class RunLogLine:
    seq: int
    at: str
    stream: str
    """stdout/stderr of the run's process, or "prefect" for a record of Prefect's logger."""
    line: str
    level: int | None = None
    """The record's level (logging.INFO...) for Prefect's records; None for process output."""
    logger: str | None = None


@dataclass(frozen=True)
class WorkerRecord:
    pool: str
    name: str
    heartbeat_at: float
    heartbeat_interval: float
    started_at: str

    def is_online(self, now: float, missed_beats: int = 3) -> bool:
        return now - self.heartbeat_at <= self.heartbeat_interval * missed_beats


_ADJECTIVES = ("amber", "brisk", "calm", "dapper", "eager", "fuzzy", "gentle", "hazy", "keen")
_NOUNS = ("otter", "heron", "lynx", "falcon", "badger", "marten", "ibis", "puffin", "wren")


def run_name(run_id: str) -> str:
    """A readable name for a run, stable for its id (Prefect names runs like this too), and
    unique as the id is: two words from the id's first 8 hex digits, then its next 6
    (`eager-badger-1f4efd`). Two words alone (81 pairs) repeated within seconds."""
    digits = run_id.replace("-", "")
    number = int(digits[:8], 16)
    words = f"{_ADJECTIVES[number % len(_ADJECTIVES)]}-{_NOUNS[(number // 7) % len(_NOUNS)]}"
    return f"{words}-{digits[8:14]}" if len(digits) >= 14 else words
