"""The store interface. Each method's docstring is its contract; every backend honours it and
the suite in tests/contract checks it against each backend, one test module per concern.

`Store` is the union of four narrow protocols, one per concern, so that a caller that needs
one concern can say so:

- `ResourceStore`: desired resources (pools, queues, deployments) and their history: the
  revisioned `transaction()`, `observe()`, applied plans, repositories;
- `ValueStore`: variables, blocks (secrets) and the step cache (written in a transaction);
- `LeaseStore`: leases and the daemon's status of each repository;
- `RunStore`: runs, queues' claims, logs and workers, and the Prefect records of a run's
  inside (`PrefectRecordStore`).

Reads return immutable values. All writes happen inside `transaction()`, which is atomic (all
or nothing), serialised against every other writer on the same store, and bumps the store's
revision. A transaction opened with `expected_revision` fails with StaleStateError, writing
nothing, when another writer got there first: this is how "what is applied is what was
planned" holds across processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from reconciler.model.observed import (
    AppliedPlanRecord,
    BlockRecord,
    Fence,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
)
from reconciler.model.prefect_records import (
    ArtifactRecord,
    EventRecord,
    FlowRunFilter,
    NewApiRun,
    PrefectFlow,
    PrefectLogRecord,
    RunStateUpdate,
    TaskRunRecord,
    TaskRunStateRecord,
)
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import FlowRun, NewRun, RunLogLine, RunState, WorkerRecord
from reconciler.store.web_types import WebRecordStore


class WriteTransaction(Protocol):
    """Writes inside one store transaction. Nothing is visible to others until it commits."""

    def put(self, resource: Resource) -> None:
        """Create or replace the object with `resource.kind` and `resource.key`."""
        ...

    def delete(self, kind: Kind, key: str) -> None:
        """Delete that object; deleting a work pool deletes its queues."""
        ...

    def check_fence(self, fence: Fence) -> None:
        """Raise StaleLeaseError (and so roll the transaction back) unless `fence` is still
        the current, unexpired lease."""
        ...

    def remove_scheduled_runs(self, deployment: str, keep_schedules: Iterable[str]) -> int:
        """Delete the deployment's auto-scheduled runs that have not started, except those of
        the schedules in `keep_schedules`; manual runs stay. Returns how many went."""
        ...

    def record_repository(self, repo: str, location: str, commit: str | None) -> None:
        """Remember the commit last applied from `repo`."""
        ...

    def record_plan(self, plan_json: dict[str, Any]) -> int:
        """Append an applied plan to the history; returns its id."""
        ...

    def record_step_result(self, input_hash: str, step_name: str, outputs: Any) -> None:
        """Remember what a build or push step returned for these inputs (replacing any)."""
        ...

    def set_variable(self, name: str, value: Any) -> None: ...

    def delete_variable(self, name: str) -> bool:
        """True when the variable existed."""
        ...

    def set_block(self, type_slug: str, name: str, value: Any) -> None: ...

    def delete_block(self, type_slug: str, name: str) -> bool: ...


class PrefectRecordStore(Protocol):
    """What our Prefect API (reconciler/prefect_api) keeps of a run's inside. Each call is
    one atomic write of its own, or a read; none changes the revision."""

    def ensure_prefect_flow(self, name: str) -> PrefectFlow:
        """Prefect's flow of that name, created on first use (its id is stable per name)."""
        ...

    def prefect_flow(self, flow_id: str) -> PrefectFlow | None: ...

    def prefect_flow_named(self, name: str) -> PrefectFlow | None: ...

    def create_api_run(self, new: NewApiRun) -> FlowRun:
        """A subflow or ad hoc run: deployment, pool and queue '' (claims and limits never
        count it), held by `new.worker`. With an id already used: that run, unchanged."""
        ...

    def filter_flow_runs(self, wanted: FlowRunFilter) -> list[FlowRun]:
        """Runs matching every part of `wanted` (Prefect's state type and name included),
        by scheduled time, at most `wanted.limit`."""
        ...

    def apply_flow_run_state(
        self, run_id: str, decide: Callable[[FlowRun], RunStateUpdate | None]
    ) -> FlowRun | None:
        """In one transaction, with the run locked: `decide` (pure) reads the run and says
        what it becomes (None: nothing), and that is written, history appended. Two calls for
        one run never interleave. Returns the run afterwards; None when there is no such run."""
        ...

    def update_flow_run_settings(
        self,
        run_id: str,
        *,
        flow_version: str | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> bool:
        """Set what is not None; False when there is no such run."""
        ...

    def record_events(self, events: Sequence[EventRecord]) -> None:
        """Store events in one transaction; an id already stored is ignored. A task-run state
        event upserts its task run (flow run from its related `flow-run` resource), applied
        only when its time is newer than the stored state's."""
        ...

    def create_task_run(self, task: TaskRunRecord) -> TaskRunRecord:
        """A task run made through the API (a subflow's placeholder); an id already stored
        returns the stored one."""
        ...

    def get_task_run(self, task_run_id: str) -> TaskRunRecord | None: ...

    def task_runs(self, flow_run_id: str) -> list[TaskRunRecord]:
        """The flow run's task runs in the order they started."""
        ...

    def task_run_states(self, task_run_id: str) -> list[TaskRunStateRecord]:
        """Every state the task run went through, oldest first, from its events."""
        ...

    def append_prefect_logs(self, records: Sequence[PrefectLogRecord]) -> None:
        """Append Prefect's log records to their runs' logs (stream "prefect", their own
        time, level and logger), numbered after the lines already there."""
        ...

    def run_logs(
        self, run_id: str, after: int = 0, min_level: int | None = None
    ) -> list[RunLogLine]:
        """Lines numbered after `after`, in order; with `min_level`, only Prefect's records
        at or above that level."""
        ...

    def create_artifact(self, artifact: ArtifactRecord) -> ArtifactRecord: ...

    def artifacts(self, flow_run_id: str) -> list[ArtifactRecord]:
        """The run's artifacts, oldest first."""
        ...


class ResourceStore(Protocol):
    """Desired resources and their history: what a plan reads and an apply writes."""

    def observe(self) -> ObservedState:
        """A consistent snapshot of every object, variable and block, with its revision."""
        ...

    def revision(self) -> int:
        """Increases with every committed transaction. 0 for an empty store."""
        ...

    def list_resources(self, kind: Kind) -> list[Resource]:
        """Objects of one kind, sorted by key."""
        ...

    def get(self, kind: Kind, key: str) -> Resource | None: ...

    def repositories(self) -> list[RepositoryRecord]: ...

    def history(self, limit: int = 20) -> list[AppliedPlanRecord]:
        """Applied plans, newest first (without the plan body)."""
        ...

    def applied_plan(self, plan_id: int) -> AppliedPlanRecord | None:
        """One applied plan with its full plan JSON."""
        ...

    def transaction(
        self, expected_revision: int | None = None
    ) -> AbstractContextManager[WriteTransaction]:
        """Serialised, atomic writes. Raises StaleStateError on entry when the revision is not
        `expected_revision`. An exception inside the block rolls everything back."""
        ...


class ValueStore(Protocol):
    """Variables, blocks (secret values) and the step cache; written in a `transaction()`."""

    def variables(self) -> dict[str, Any]: ...

    def blocks(self) -> list[BlockRecord]: ...

    def step_result(self, input_hash: str) -> Any | None:
        """The outputs a step returned for inputs with this hash, or None."""
        ...


class LeaseStore(Protocol):
    """Leases on repositories (who does the work) and the daemon's status of each; each
    call is an atomic write of its own or a read, and none changes the revision."""

    def repo_statuses(self) -> list[RepoStatusRecord]:
        """The daemon's status of every watched repository, sorted by name."""
        ...

    def put_repo_status(self, name: str, status: dict[str, Any]) -> None:
        """Replace one repository's status, atomically, in a write of its own: it does not
        change the revision (status is not desired state)."""
        ...

    def scheduling_policy(self) -> str | None:
        """The scheduling policy the daemon stored (JSON text; reconciler/scheduling/policy.py
        reads it), or None when no daemon has stored one."""
        ...

    def set_scheduling_policy(self, policy_json: str) -> None:
        """Store the scheduling policy every scheduler tick reads, in a write of its own: it
        does not change the revision."""
        ...

    def acquire_lease(
        self, name: str, holder: str, ttl_seconds: float, *, replacing: str | None = None
    ) -> str | None:
        """Take or renew the lease on repository `name` for `ttl_seconds`. Succeeds (returns
        None) when no lease is held, it expired, `holder` holds it, or `replacing` holds it
        (a holder known to be dead); otherwise returns the current holder. Atomic: of two
        callers racing for a free lease exactly one succeeds."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Drop the lease if `holder` holds it; otherwise do nothing."""
        ...

    def lease_token(self, name: str, holder: str) -> int | None:
        """The fencing token of the lease when `holder` holds it now, else None. Tokens only
        grow: each new holder (or a holder back after its lease lapsed) gets a greater one."""
        ...


class RunStore(PrefectRecordStore, Protocol):
    """Flow runs, their claims from pools and queues, their logs, and the workers."""

    # Each call is one atomic write of its own, or a read; none changes the revision.

    def create_run(self, new: NewRun) -> FlowRun:
        """A SCHEDULED run. With an `idempotency_key` already used, the existing run."""
        ...

    def create_runs(self, runs: Iterable[NewRun]) -> int:
        """Create many runs in one write; a run whose idempotency key exists is skipped.
        Returns how many were created."""
        ...

    def scheduled_ahead(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        """For each (deployment, schedule id): how many of its auto-scheduled runs wait at
        or after `now`, and the latest of their times."""
        ...

    def mark_late_runs(self, late_before: float, *, skip: bool = False) -> list[str]:
        """SCHEDULED runs due before `late_before` become LATE (or, with `skip`, CANCELLED).
        Returns their ids."""
        ...

    def get_run(self, run_id: str) -> FlowRun | None: ...

    def find_runs(self, prefix: str) -> list[FlowRun]:
        """Runs whose id starts with `prefix`, or named `prefix` (at most 5)."""
        ...

    def list_runs(
        self,
        *,
        deployment: str | None = None,
        states: Iterable[RunState] | None = None,
        pool: str | None = None,
        limit: int = 100,
        scheduled_after: float | None = None,
        scheduled_until: float | None = None,
        oldest_first: bool = False,
    ) -> list[FlowRun]:
        """Newest scheduled first (`oldest_first`: the other way); `scheduled_after` and
        `scheduled_until` (epoch seconds) keep runs scheduled in (after, until]."""
        ...

    def has_claimable_runs(self, pool: str, scheduled_before: float) -> bool:
        """Whether a claim could find anything; takes no write lock."""
        ...

    def claim_runs(
        self,
        pool: str,
        worker: str,
        *,
        limit: int,
        scheduled_before: float,
        queues: Iterable[str] | None = None,
    ) -> list[FlowRun]:
        """Atomically move up to `limit` SCHEDULED runs of `pool` (scheduled at or before
        `scheduled_before`, in `queues` or all queues) to PENDING under `worker`: queue
        priority first (lower first), then scheduled time; nothing from a paused pool or
        queue; pool and queue concurrency limits count PENDING, RUNNING and CANCELLING runs
        and hold exactly. A run is returned to one caller only."""
        ...

    def set_run_state(
        self,
        run_id: str,
        state: RunState,
        message: str | None = None,
        *,
        expected: Iterable[RunState] | None = None,
        infrastructure_id: str | None = None,
        exit_code: int | None = None,
    ) -> FlowRun | None:
        """Move the run when its state is in `expected` (any non-final one when None); final
        states never change. Returns the run afterwards, or None when it was not moved."""
        ...

    def cancel_run(self, run_id: str) -> FlowRun | None:
        """SCHEDULED/PENDING: CANCELLED; RUNNING: CANCELLING (its worker stops it)."""
        ...

    def append_run_logs(self, run_id: str, lines: Iterable[tuple[str, str]]) -> None:
        """Append (stream, line) pairs; they are numbered from 1 in order."""
        ...

    def heartbeat(self, pool: str, worker: str, interval: float) -> None: ...

    def remove_worker(self, pool: str, worker: str) -> None: ...

    def workers(self, pool: str | None = None) -> list[WorkerRecord]: ...

    def crash_orphaned_runs(self, *, missed_beats: int = 3, worker: str | None = None) -> list[str]:
        """PENDING/RUNNING/CANCELLING runs whose worker missed `missed_beats` heartbeats (or
        is unknown), or with `worker`, every one that worker holds: CRASHED. Returns ids."""
        ...

    def iter_active_runs(self, worker: str) -> Iterator[FlowRun]: ...

    def wait_for_runs(self, pool: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to `timeout` seconds for word that runs of `pool` may have become claimable
        (runs created, a run ended and freed its slot, the pool, a queue or a deployment
        written); return early, with False, once `stop` is set. True means "look again now";
        False, that the time ran out (or `stop`). A backend that hears nothing (SQLite) just
        waits out the timeout and returns False, so callers keep polling; PostgreSQL
        LISTENs, so an idle worker hears of a new run within milliseconds."""
        ...


class Store(ResourceStore, ValueStore, LeaseStore, RunStore, WebRecordStore, Protocol):
    """The whole store: every concern, as a backend implements it."""

    url: str
    """Where the store is, as messages and logs may show it: without credentials."""

    def close(self) -> None: ...
