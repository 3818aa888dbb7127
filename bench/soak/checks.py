"""The soak's invariants (bench/soak), checked once everything has stopped: each check returns
the violations it found, as sentences (none: it holds). docs/soak.md explains each one.

The evidence: the store (runs, their state history, applied plans, raw tables), the marks the
flows append (run id, a uuid4 per executing process, start time, pid), the driver's record
(every run it created, every commit it made) and /proc (processes left behind).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak.driver import Record
from bench.soak.project import Project
from reconciler.model.resources import Kind
from reconciler.model.runs import ACTIVE_STATES, FlowRun, RunState
from reconciler.store import Store

MAX_LISTED = 10
"""Violations of one kind printed one by one; the rest are counted."""


@dataclass
class Mark:
    run_id: str
    process: str
    at: float


@dataclass
class Outcome:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, found: Iterable[str]) -> None:
        found = list(found)
        self.violations += [f"{kind}: {text}" for text in found[:MAX_LISTED]]
        if len(found) > MAX_LISTED:
            self.violations.append(f"{kind}: ... and {len(found) - MAX_LISTED} more")


def read_marks(path: Path) -> list[Mark]:
    if not path.exists():
        return []
    marks = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            marks.append(Mark(parts[0], parts[1], float(parts[2])))
    return marks


def check_all(
    store: Store,
    raw: RawStore,
    project: Project,
    record: Record,
    marks: list[Mark],
    cutoff: float,
) -> Outcome:
    outcome = Outcome()
    runs = {run.id: run for run in store.list_runs(limit=10_000_000)}
    by_run: dict[str, set[str]] = defaultdict(set)
    for mark in marks:
        by_run[mark.run_id].add(mark.process)
    outcome.add("executed twice", _executed_twice(runs, by_run))
    outcome.add("lost", _lost(runs, by_run, record, cutoff))
    outcome.add("commits", _commits(store, project))
    outcome.add("integrity", _integrity(runs, raw, store))
    outcome.figures = _figures(runs, marks, record, project, store, cutoff)
    return outcome


def _executed_twice(runs: dict[str, FlowRun], by_run: dict[str, set[str]]) -> Iterable[str]:
    """A run is executed at most once: a CRASHED run is final and never retried, and these
    flows have no retries; so one flow process at most per run (marks), and one claim at
    most (entries into PENDING in the run's history)."""
    for run_id, processes in sorted(by_run.items()):
        if len(processes) > 1:
            yield f"run {run_id} was executed by {len(processes)} processes"
        if run_id not in runs:
            yield f"run {run_id} was executed but is not in the store"
    for run in runs.values():
        claims = sum(1 for change in run.history if change.state is RunState.PENDING)
        if claims > 1:
            yield f"run {run.id} went PENDING {claims} times: {_story(run)}"


def _lost(
    runs: dict[str, FlowRun], by_run: dict[str, set[str]], record: Record, cutoff: float
) -> Iterable[str]:
    """No run is lost: every run the driver created is in the store; every run due by the
    cut-off (the end of the chaos) reached a final state; none is still active once every
    worker has stopped; a COMPLETED run was executed (its flow left a mark)."""
    for run_id in record.created:
        if run_id not in runs:
            yield f"run {run_id} was created but is not in the store"
    for run in runs.values():
        if run.state in ACTIVE_STATES:
            yield f"run {run.id} is {run.state} with every worker stopped: {_story(run)}"
        elif not run.state.is_final and run.scheduled_time <= cutoff:
            yield (
                f"run {run.id} was due {cutoff - run.scheduled_time:.0f} s before the cut-off "
                f"and is still {run.state}: {_story(run)}"
            )
        if run.state is RunState.COMPLETED and run.id not in by_run:
            yield f"run {run.id} is COMPLETED but its flow never ran: {_story(run)}"
        if run.state is RunState.FAILED:
            yield f"run {run.id} FAILED (these flows cannot fail): {run.state_message}"


def _commits(store: Store, project: Project) -> Iterable[str]:
    """Every commit applied once: the applied plans name commits that were made, each at most
    once and in the order they were made; the store's repository record is at the last commit
    and holds exactly its deployments. Commits made while the daemon was down (or in quick
    succession) are applied together by the plan of the newest: they count as applied by it."""
    order = {sha: index for index, sha in enumerate(project.commits)}
    applied = [
        source["commit"]
        for plan in reversed(store.history(limit=10_000_000))
        for source in plan.sources
    ]
    seen: set[str] = set()
    last = -1
    for sha in applied:
        if sha not in order:
            yield f"an applied plan names commit {sha}, which the driver never made"
            continue
        if sha in seen:
            yield f"commit {sha[:10]} was applied more than once"
        elif order[sha] < last:
            yield f"commit {sha[:10]} was applied after a newer one"
        seen.add(sha)
        last = max(last, order[sha])
    recorded = {record.last_commit for record in store.repositories()}
    if recorded != {project.commits[-1]}:
        yield f"the store records commit(s) {recorded}, not the last one {project.commits[-1]}"
    have = {resource.key for resource in store.list_resources(Kind.DEPLOYMENT)}
    want = set(project.keys())
    if have != want:
        yield f"deployments in the store {sorted(have ^ want)} differ from the last commit's"


def _integrity(runs: dict[str, FlowRun], raw: RawStore, store: Store) -> Iterable[str]:
    """The store is whole: the database's own check (SQLite), no row pointing at a missing
    one, every run's state its history's last, nothing after a final state, and no worker
    left registered once all stopped."""
    yield from raw.database_check()
    for what, query in DANGLING.items():
        count = raw.count(query)
        if count:
            yield f"{count} {what}"
    for run in runs.values():
        states = [change.state for change in run.history]
        if not states or states[-1] is not run.state:
            yield f"run {run.id} is {run.state} but its history ends {states[-1:]}"
        finals = [i for i, state in enumerate(states) if state.is_final]
        if finals and finals[0] != len(states) - 1:
            yield f"run {run.id} changed after a final state: {_story(run)}"
    for worker in store.workers():
        yield f"worker {worker.name} is still registered on pool {worker.pool}"


DANGLING = {
    "run log lines of runs that do not exist": (
        "SELECT COUNT(*) FROM flow_run_logs l WHERE NOT EXISTS "
        "(SELECT 1 FROM flow_runs r WHERE r.id = l.run_id)"
    ),
    "task runs of flow runs that do not exist": (
        "SELECT COUNT(*) FROM task_runs t WHERE t.flow_run_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM flow_runs r WHERE r.id = t.flow_run_id)"
    ),
    "deployments on pools that do not exist": (
        "SELECT COUNT(*) FROM deployments d WHERE d.pool_name IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM work_pools p WHERE p.name = d.pool_name)"
    ),
    "work queues of pools that do not exist": (
        "SELECT COUNT(*) FROM work_queues q WHERE NOT EXISTS "
        "(SELECT 1 FROM work_pools p WHERE p.name = q.pool_name)"
    ),
    "runs of deployments on pools that do not exist": (
        "SELECT COUNT(*) FROM flow_runs r WHERE r.deployment <> '' AND NOT EXISTS "
        "(SELECT 1 FROM work_pools p WHERE p.name = r.pool)"
    ),
}


class RawStore:
    """SQL on the store's database, past the store's API (for the integrity checks)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(f"file:{self.url[len('sqlite:///') :]}?mode=ro", uri=True)
            try:
                return list(conn.execute(query))
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as pg:
            return list(pg.execute(query))

    def count(self, query: str) -> int:
        return int(self._rows(query)[0][0])

    def database_check(self) -> list[str]:
        if not self.url.startswith("sqlite:///"):
            # PostgreSQL enforces its foreign keys; its catalog must still read back whole.
            rows = self._rows(
                "SELECT COUNT(*) FROM pg_constraint c WHERE c.contype = 'f' AND NOT c.convalidated"
            )
            return [f"{rows[0][0]} foreign keys not validated"] if rows[0][0] else []
        found = [str(row[0]) for row in self._rows("PRAGMA integrity_check")]
        problems = [] if found == ["ok"] else [f"PRAGMA integrity_check: {found[:5]}"]
        dangling = self._rows("PRAGMA foreign_key_check")
        if dangling:
            problems.append(f"PRAGMA foreign_key_check: {len(dangling)} rows, e.g. {dangling[0]}")
        return problems


def _story(run: FlowRun) -> str:
    return " -> ".join(
        f"{change.state}" + (f" ({change.message})" if change.message else "")
        for change in run.history
    )


def _figures(
    runs: dict[str, FlowRun],
    marks: list[Mark],
    record: Record,
    project: Project,
    store: Store,
    cutoff: float,
) -> dict[str, Any]:
    states = Counter(run.state.value for run in runs.values())
    due = [run for run in runs.values() if run.scheduled_time <= cutoff]
    first_mark: dict[str, float] = {}
    for mark in marks:
        first_mark[mark.run_id] = min(mark.at, first_mark.get(mark.run_id, mark.at))
    pickups = sorted(
        first_mark[run_id] - asked
        for run_id, asked in record.created.items()
        if run_id in first_mark
    )
    applied = sum(len(plan.sources) for plan in store.history(limit=10_000_000))
    crashed = Counter(
        _reason(run.state_message) for run in runs.values() if run.state is RunState.CRASHED
    )
    return {
        "runs in the store": len(runs),
        "runs created by the driver": len(record.created),
        "runs created by the schedules": sum(1 for r in runs.values() if r.schedule_id),
        "runs due by the cut-off": len(due),
        "states": dict(sorted(states.items())),
        "states of the runs due": dict(sorted(Counter(r.state.value for r in due).items())),
        "why runs crashed": dict(crashed.most_common()),
        "flow executions (marks)": len(marks),
        "run creations that failed (store away)": record.create_failures,
        "runs in the store the driver was not told of": sum(
            1 for r in runs.values() if not r.schedule_id and r.id not in record.created
        ),
        "commits made": len(project.commits),
        "commits applied by a plan of their own": applied,
        "kills": len(record.kills),
        "pickup p50 s": round(statistics.median(pickups), 3) if pickups else None,
        "pickup p95 s": round(_percentile(pickups, 0.95), 3) if pickups else None,
        "pickup max s": round(pickups[-1], 3) if pickups else None,
    }


def _reason(message: str | None) -> str:
    """A state message with its run-specific parts (ids, numbers) taken out, to count by."""
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "RUN", (message or "").splitlines()[0][:120])
    return re.sub(r"\d+(\.\d+)?", "N", text) if message else "(no message)"


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def dumps(figures: dict[str, Any]) -> str:
    return json.dumps(figures, indent=2)
