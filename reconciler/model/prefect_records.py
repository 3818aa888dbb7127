"""What the store keeps of a Prefect run's inside: flows by name, task runs, events, artifacts,
Prefect's log records, and the state changes our Prefect API (reconciler/prefect_api) decides.

Plain values shared by the store backends (reconciler/store/prefect_records.py writes them) and
the API (which turns them into Prefect's JSON shapes).
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.runs import FlowRun, RunState

PREFECT_NAMESPACE = uuid.UUID("6f1d7a0e-3b5c-4f57-9a57-2d0f5c1e8b21")
"""Namespace of the stable uuid5 ids we give Prefect's objects (flows, deployments...)."""

PREFECT_STATE_OF: dict[RunState, tuple[str, str]] = {
    RunState.SCHEDULED: ("SCHEDULED", "Scheduled"),
    RunState.LATE: ("SCHEDULED", "Late"),
    RunState.PENDING: ("PENDING", "Pending"),
    RunState.RUNNING: ("RUNNING", "Running"),
    RunState.CANCELLING: ("CANCELLING", "Cancelling"),
    RunState.COMPLETED: ("COMPLETED", "Completed"),
    RunState.FAILED: ("FAILED", "Failed"),
    RunState.CRASHED: ("CRASHED", "Crashed"),
    RunState.CANCELLED: ("CANCELLED", "Cancelled"),
}
"""Prefect's state type and default name for each of our run states."""


def stable_id(kind: str, key: str) -> str:
    """The same uuid for the same object every time (`kind` keeps kinds apart)."""
    return str(uuid.uuid5(PREFECT_NAMESPACE, f"{kind}:{key}"))


def prefect_flow_id(name: str) -> str:
    return stable_id("flow", name)


def utc_iso(value: str | None) -> str | None:
    """An ISO 8601 time as UTC with microseconds, so that times compare as text."""
    if value is None:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def prefect_state_of(run: FlowRun) -> tuple[str, str]:
    """The run's state as Prefect's (type, name): what Prefect's engine last had accepted,
    or our own state's equivalent when reconciler moved it since (claim, cancel, crash)."""
    if run.prefect_state is not None:
        return str(run.prefect_state["type"]), str(run.prefect_state.get("name") or "")
    state_type, name = PREFECT_STATE_OF[run.state]
    return state_type, run.state_name or name


@dataclass(frozen=True)
class PrefectFlow:
    id: str
    name: str
    created_at: str


@dataclass(frozen=True)
class NewApiRun:
    """A flow run Prefect's client creates itself: a subflow (with `parent_task_run_id`) or
    an ad hoc run. It has no deployment, pool or queue; a subflow has its parent's worker."""

    flow_name: str
    state: RunState
    prefect_state: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    parent_task_run_id: str | None = None
    worker: str | None = None
    empirical_policy: dict[str, Any] | None = None
    flow_version: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class FlowRunFilter:
    """Prefect's flow-run filter, the part its engine uses. None means "any"."""

    ids: tuple[str, ...] | None = None
    parent_task_run_ids: tuple[str, ...] | None = None
    state_types: tuple[str, ...] | None = None
    """Prefect's state types (SCHEDULED, RUNNING...)."""
    state_names: tuple[str, ...] | None = None
    newest_first: bool = True
    limit: int = 200


@dataclass(frozen=True)
class RunStateUpdate:
    """A state change that Prefect's orchestration rules accepted (or imposed) for a run."""

    state: RunState
    state_name: str
    message: str | None
    prefect_state: dict[str, Any]
    run_count: int
    start_time: str | None
    end_time: str | None
    history_message: str


@dataclass(frozen=True)
class TaskRunRecord:
    id: str
    flow_run_id: str | None
    name: str
    task_key: str
    dynamic_key: str
    state_type: str | None
    state_name: str | None
    state_message: str | None
    state_timestamp: str | None
    start_time: str | None
    end_time: str | None
    run_count: int
    cache_hit: bool
    details: dict[str, Any]
    """Prefect's task run as its last event carried it (`payload.task_run`)."""

    @property
    def retries_used(self) -> int:
        return max(self.run_count - 1, 0)


@dataclass(frozen=True)
class TaskRunStateRecord:
    """One state a task run went through (from its `prefect.task-run.*` event)."""

    timestamp: str
    type: str | None
    name: str | None
    message: str | None


TASK_RUN_PREFIX = "prefect.task-run."
FLOW_RUN_PREFIX = "prefect.flow-run."


@dataclass(frozen=True)
class EventRecord:
    """A Prefect event as its client sent it (`id` is unique: repeats are ignored)."""

    id: str
    occurred: str
    event: str
    resource: dict[str, Any]
    related: list[dict[str, Any]]
    payload: dict[str, Any]

    @property
    def resource_id(self) -> str:
        return str(self.resource.get("prefect.resource.id", ""))

    @property
    def is_task_run_state(self) -> bool:
        return self.event.startswith(TASK_RUN_PREFIX) and self.resource_id.startswith(
            TASK_RUN_PREFIX
        )

    def related_id(self, role: str, prefix: str) -> str | None:
        for item in self.related:
            if item.get("prefect.resource.role") == role:
                resource_id = str(item.get("prefect.resource.id", ""))
                if resource_id.startswith(prefix):
                    return resource_id[len(prefix) :]
        return None


@dataclass(frozen=True)
class PrefectLogRecord:
    flow_run_id: str
    task_run_id: str | None
    logger: str
    level: int
    message: str
    timestamp: str


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    key: str | None
    type: str | None
    description: str | None
    data: Any
    flow_run_id: str | None
    task_run_id: str | None
    created_at: str
