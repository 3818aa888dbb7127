"""The records of the web API and dashboard (audit log, suspended syncs, pages of runs) and
the store concern that holds them; written by store/web_records.py for both databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.model.resources import Resource
from reconciler.model.runs import FlowRun, RunState


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    """Who: the role of the token used and where the request came from."""
    action: str
    """What: "run.create", "run.cancel", "repository.sync", "work-pool.pause"..."""
    target: str
    detail: dict[str, Any]
    """The outcome and what was given (never a secret's value)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RunQuery:
    """A page of flow runs, newest scheduled first. `after` is the (scheduled_time, id) of
    the last run of the previous page."""

    deployment: str | None = None
    states: tuple[RunState, ...] = ()
    scheduled_after: float | None = None
    scheduled_before: float | None = None
    after: tuple[float, str] | None = None
    limit: int = 50


@dataclass(frozen=True)
class SuspendedSync:
    name: str
    suspended_at: str
    actor: str


@dataclass(frozen=True)
class RunBuckets:
    """How many runs were scheduled in each hour from `start`, by state."""

    start: float
    hours: int
    counts: dict[int, dict[str, int]] = field(default_factory=dict)


class WebRecordStore(Protocol):
    def record_audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> int:
        """Append one entry to the audit log; returns its id."""
        ...

    def audit_log(
        self, *, limit: int = 50, before: int | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        """Entries newest first, with ids below `before`, about `target` when given."""
        ...

    def set_sync_suspended(self, name: str, suspended: bool, actor: str) -> bool:
        """Suspend or resume the automatic sync of repository `name`; False when it already
        was so (nothing written)."""
        ...

    def suspended_syncs(self) -> list[SuspendedSync]:
        """Repositories whose automatic sync is suspended, by name."""
        ...

    def query_runs(self, query: RunQuery) -> list[FlowRun]:
        """One page of runs (see RunQuery), newest scheduled first."""
        ...

    def run_buckets(self, start: float, hours: int) -> RunBuckets:
        """Runs scheduled in [start, start + hours h), counted by hour and state."""
        ...

    def runs_in_flight(self) -> dict[str, dict[str, int]]:
        """PENDING, RUNNING and CANCELLING runs counted by pool and worker."""
        ...

    def deployment_page(
        self, *, after: str | None, limit: int, search: str | None
    ) -> list[Resource]:
        """Deployments by key after `after`, whose key contains `search` (any case), at most
        `limit`: one page read as one, not the whole table."""
        ...

    def last_and_next_runs(self, deployment: str, now: float) -> tuple[FlowRun | None, ...]:
        """(the latest run scheduled at or before `now`, the first waiting run after it)."""
        ...
