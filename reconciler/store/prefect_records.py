"""The records of a Prefect run's inside, in the SQL store (SQLite and PostgreSQL alike).

Mixed into the backends of store/sql_store.py, in its common SQL; a run's row is read
`FOR UPDATE` before a compare-and-set (SQLite's writer lock already excludes every other
writer), and two writers of one run's log lines take turns (`_lock`).

What is kept: Prefect's flows by name; the Prefect side of our flow runs (Prefect's state,
run count, retry policy, subflow link), changed only through `apply_flow_run_state()` whose
decision (reconciler/prefect_api/orchestration.py) is taken under the run's lock; every event
the client sends (deduplicated by id), from which task runs are kept newest-wins by state
time and read back as their state history; Prefect's log records beside the process output;
artifacts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.model.prefect_records import (
    FLOW_RUN_PREFIX,
    TASK_RUN_PREFIX,
    ArtifactRecord,
    EventRecord,
    FlowRunFilter,
    NewApiRun,
    PrefectFlow,
    PrefectLogRecord,
    RunStateUpdate,
    TaskRunRecord,
    TaskRunStateRecord,
    prefect_flow_id,
    prefect_state_of,
    utc_iso,
    utc_now_iso,
)
from reconciler.model.resources import canonical_json
from reconciler.model.runs import (
    WAITING_STATES,
    FlowRun,
    RunLogLine,
    RunState,
    StateChange,
    run_name,
)
from reconciler.store.run_events import emit_run_states
from reconciler.store.run_rows import INSERT_COLUMNS, RUN_COLUMNS, now_iso, run_from_row
from reconciler.store.sql_store import LOCK_RUN_LOGS, SqlStoreBase

_TASK_COLUMNS = (
    "id, flow_run_id, name, task_key, dynamic_key, state_type, state_name, state_message, "
    "state_timestamp, start_time, end_time, run_count, cache_hit, details"
)
_TASK_MARKS = ", ".join("?" for _ in _TASK_COLUMNS.split(","))
_ARTIFACT_COLUMNS = "id, key, type, description, data, flow_run_id, task_run_id, created_at"
_LOG_COLUMNS = "seq, at, stream, line, level, logger"


def _task_from_row(row: Sequence[Any]) -> TaskRunRecord:
    return TaskRunRecord(
        id=row[0],
        flow_run_id=row[1],
        name=row[2],
        task_key=row[3],
        dynamic_key=row[4],
        state_type=row[5],
        state_name=row[6],
        state_message=row[7],
        state_timestamp=row[8],
        start_time=row[9],
        end_time=row[10],
        run_count=int(row[11] or 0),
        cache_hit=bool(row[12]),
        details=json.loads(row[13]),
    )


def _task_values(task: TaskRunRecord) -> tuple[Any, ...]:
    return (
        task.id,
        task.flow_run_id,
        task.name,
        task.task_key,
        task.dynamic_key,
        task.state_type,
        task.state_name,
        task.state_message,
        utc_iso(task.state_timestamp),
        utc_iso(task.start_time),
        utc_iso(task.end_time),
        task.run_count,
        task.cache_hit,
        canonical_json(task.details),
    )


def _frees_or_offers(pool: str, state: RunState) -> bool:
    """A run of a pool moved to a state that frees a slot or offers it to claims."""
    return bool(pool) and (state.is_final or state in WAITING_STATES)


def task_run_from_event(event: EventRecord) -> TaskRunRecord:
    """The task run as a `prefect.task-run.<State>` event describes it."""
    payload = event.payload
    details = payload.get("task_run") or {}
    state = payload.get("validated_state") or {}
    state_name = state.get("name") or event.event[len(TASK_RUN_PREFIX) :]
    return TaskRunRecord(
        id=event.resource_id[len(TASK_RUN_PREFIX) :],
        flow_run_id=event.related_id("flow-run", FLOW_RUN_PREFIX),
        name=str(details.get("name") or event.resource.get("prefect.resource.name") or ""),
        task_key=str(details.get("task_key") or ""),
        dynamic_key=str(details.get("dynamic_key") or ""),
        state_type=state.get("type") or event.resource.get("prefect.state-type"),
        state_name=state_name,
        state_message=state.get("message"),
        state_timestamp=event.occurred,
        start_time=details.get("start_time"),
        end_time=details.get("end_time"),
        run_count=int(details.get("run_count") or event.resource.get("prefect.run-count") or 0),
        cache_hit=state_name == "Cached",
        details=details,
    )


class PrefectRecords(SqlStoreBase):
    """Mixed into the SQL store's backends; see the module docstring."""

    # -- flows -----------------------------------------------------------------------------

    def ensure_prefect_flow(self, name: str) -> PrefectFlow:
        """The flow of that name, created on first use (Prefect's POST /flows/)."""
        found = self.prefect_flow_named(name)
        if found is not None:
            return found
        with self._write() as conn:
            conn.execute(
                "INSERT INTO prefect_flows (id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (prefect_flow_id(name), name, now_iso()),
            )
        made = self.prefect_flow_named(name)
        assert made is not None
        return made

    def prefect_flow_named(self, name: str) -> PrefectFlow | None:
        rows = self._read("SELECT id, name, created_at FROM prefect_flows WHERE name = ?", (name,))
        return PrefectFlow(*rows[0]) if rows else None

    def prefect_flow(self, flow_id: str) -> PrefectFlow | None:
        rows = self._read("SELECT id, name, created_at FROM prefect_flows WHERE id = ?", (flow_id,))
        return PrefectFlow(*rows[0]) if rows else None

    # -- flow runs made and moved by Prefect's engine ---------------------------------------

    def create_api_run(self, new: NewApiRun) -> FlowRun:
        """A subflow or ad hoc run: deployment, pool and queue '' (no claim or limit counts
        it), `new.worker` holds it. An id already used returns that run unchanged."""
        run_id = new.id or str(uuid.uuid4())
        now = now_iso()
        prefect_state = {**new.prefect_state, "timestamp": utc_now_iso()}
        history = [StateChange(new.state, now, prefect_state.get("name")).to_json()]
        with self._write() as conn:
            inserted = conn.execute(
                f"INSERT INTO flow_runs ({INSERT_COLUMNS}, state_name, parent_task_run_id, "
                "prefect_state, empirical_policy, flow_version) VALUES (?, ?, '', ?, '', '', ?, "
                "?, ?, ?, '{}', ?, NULL, NULL, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    run_id,
                    new.name or run_name(run_id),
                    new.flow_name,
                    new.state.value,
                    prefect_state.get("message"),
                    time.time(),
                    canonical_json(new.parameters),
                    new.worker,
                    now,
                    now,
                    json.dumps(history),
                    prefect_state.get("name"),
                    new.parent_task_run_id,
                    canonical_json(prefect_state),
                    canonical_json(new.empirical_policy) if new.empirical_policy else None,
                    new.flow_version,
                ),
            )
            if inserted.rowcount:  # its first state is an event too
                row = conn.one(f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,))
                emit_run_states(conn, [run_from_row(row)], {}, now)
        made = self._flow_run(run_id)
        assert made is not None
        return made

    def _flow_run(self, run_id: str) -> FlowRun | None:
        rows = self._read(f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def filter_flow_runs(self, wanted: FlowRunFilter) -> list[FlowRun]:
        """Runs that match every part of `wanted`, by scheduled time (newest first by
        default), at most `wanted.limit`."""
        where: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("id", wanted.ids),
            ("parent_task_run_id", wanted.parent_task_run_ids),
        ):
            if values is not None:
                if not values:
                    return []
                matches, values_params = self.dialect.in_list(column, list(values))
                where.append(matches)
                params.extend(values_params)
        sql = f"SELECT {RUN_COLUMNS} FROM flow_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "DESC" if wanted.newest_first else "ASC"
        sql += f" ORDER BY scheduled_time {order}, created_at {order}"
        found: list[FlowRun] = []
        for row in self._read(sql, params):
            run = run_from_row(row)
            state_type, state_name = prefect_state_of(run)
            if wanted.state_types is not None and state_type not in wanted.state_types:
                continue
            if wanted.state_names is not None and state_name not in wanted.state_names:
                continue
            found.append(run)
            if len(found) >= wanted.limit:
                break
        return found

    def apply_flow_run_state(
        self, run_id: str, decide: Callable[[FlowRun], RunStateUpdate | None]
    ) -> FlowRun | None:
        """Read the run under its lock, let `decide` (pure, quick) say what it becomes, and
        write that, all in one transaction: two proposals for one run never interleave.
        Returns the run afterwards (unchanged when `decide` returned None), None if unknown."""
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ? FOR UPDATE",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            run = run_from_row(row)
            update = decide(run)
            if update is None:
                return run
            now = now_iso()
            history = [change.to_json() for change in run.history]
            history.append(StateChange(update.state, now, update.history_message).to_json())
            moved = conn.execute(
                "UPDATE flow_runs SET state = ?, state_message = ?, state_name = ?, "
                "prefect_state = ?, run_count = ?, start_time = ?, end_time = ?, history = ?, "
                "updated_at = ? WHERE id = ? AND state = ? AND run_count = ?",
                (
                    update.state.value,
                    update.message,
                    update.state_name,
                    canonical_json(update.prefect_state),
                    update.run_count,
                    update.start_time,
                    update.end_time,
                    json.dumps(history),
                    now,
                    run_id,
                    run.state.value,
                    run.run_count,
                ),
            )
            assert moved.rowcount == 1, "the run's row is locked: nobody else can move it"
            after = conn.one(f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,))
            emit_run_states(conn, [run_from_row(after)], {run_id: run.state}, now)
            if update.state is not run.state and _frees_or_offers(run.pool, update.state):
                self._notify(conn, [run.pool])
        return self._flow_run(run_id)

    def update_flow_run_settings(
        self,
        run_id: str,
        *,
        flow_version: str | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> bool:
        """Keep what Prefect's engine says of the flow before it runs (PATCH /flow_runs/ID);
        a None leaves that field as it is. False when there is no such run."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE flow_runs SET flow_version = COALESCE(?, flow_version), "
                "empirical_policy = COALESCE(?, empirical_policy) WHERE id = ?",
                (
                    flow_version,
                    canonical_json(empirical_policy) if empirical_policy is not None else None,
                    run_id,
                ),
            )
            return cursor.rowcount > 0

    # -- events and task runs --------------------------------------------------------------

    def record_events(self, events: Sequence[EventRecord]) -> None:
        """Store a batch of events in one transaction. An id already stored is skipped; a
        task-run state event also updates its task run, when its state time is newer than
        the stored one (events arrive out of order)."""
        if not events:
            return
        unique = list({event.id: event for event in events}.values())
        task_runs = [task_run_from_event(event) for event in unique if event.is_task_run_state]
        with self._write() as conn:
            received = now_iso()  # once the write is ours: triggers read events in this order
            conn.many(
                "INSERT INTO events (id, occurred, event, resource_id, resource, related, "
                "payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                [
                    (
                        event.id,
                        utc_iso(event.occurred),
                        event.event,
                        event.resource_id,
                        canonical_json(event.resource),
                        canonical_json(event.related),
                        canonical_json(event.payload),
                        received,
                    )
                    for event in unique
                ],
            )
            conn.many(
                f"INSERT INTO task_runs ({_TASK_COLUMNS}) VALUES ({_TASK_MARKS}) "
                "ON CONFLICT (id) DO UPDATE SET "
                "flow_run_id = COALESCE(excluded.flow_run_id, task_runs.flow_run_id), "
                "name = excluded.name, task_key = excluded.task_key, "
                "dynamic_key = excluded.dynamic_key, state_type = excluded.state_type, "
                "state_name = excluded.state_name, state_message = excluded.state_message, "
                "state_timestamp = excluded.state_timestamp, start_time = excluded.start_time, "
                "end_time = excluded.end_time, run_count = excluded.run_count, "
                "cache_hit = excluded.cache_hit, details = excluded.details "
                "WHERE task_runs.state_timestamp IS NULL "
                "OR task_runs.state_timestamp < excluded.state_timestamp",
                [_task_values(task) for task in task_runs],
            )

    def create_task_run(self, task: TaskRunRecord) -> TaskRunRecord:
        """A task run made through the API (a subflow's placeholder in its parent); an id
        already stored returns that task run."""
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO task_runs ({_TASK_COLUMNS}) VALUES ({_TASK_MARKS}) "
                "ON CONFLICT (id) DO NOTHING",
                _task_values(task),
            )
        found = self.get_task_run(task.id)
        assert found is not None
        return found

    def get_task_run(self, task_run_id: str) -> TaskRunRecord | None:
        rows = self._read(f"SELECT {_TASK_COLUMNS} FROM task_runs WHERE id = ?", (task_run_id,))
        return _task_from_row(rows[0]) if rows else None

    def task_runs(self, flow_run_id: str) -> list[TaskRunRecord]:
        """The flow run's task runs, in the order they started."""
        rows = self._read(
            f"SELECT {_TASK_COLUMNS} FROM task_runs WHERE flow_run_id = ? "
            "ORDER BY COALESCE(start_time, state_timestamp), name, id",
            (flow_run_id,),
        )
        return [_task_from_row(row) for row in rows]

    def task_run_states(self, task_run_id: str) -> list[TaskRunStateRecord]:
        """Every state the task run went through, oldest first (from its events)."""
        rows = self._read(
            "SELECT occurred, event, payload FROM events WHERE resource_id = ? "
            "ORDER BY occurred, id",
            (TASK_RUN_PREFIX + task_run_id,),
        )
        states: list[TaskRunStateRecord] = []
        for occurred, event, payload in rows:
            if not str(event).startswith(TASK_RUN_PREFIX):
                continue
            state = json.loads(payload).get("validated_state") or {}
            states.append(
                TaskRunStateRecord(
                    timestamp=occurred,
                    type=state.get("type"),
                    name=state.get("name") or str(event)[len(TASK_RUN_PREFIX) :],
                    message=state.get("message"),
                )
            )
        return states

    # -- logs ------------------------------------------------------------------------------

    def append_prefect_logs(self, records: Sequence[PrefectLogRecord]) -> None:
        """Append Prefect's log records (stream "prefect") after each run's lines, each with
        its own time and level, in one transaction."""
        by_run: dict[str, list[PrefectLogRecord]] = {}
        for record in records:
            by_run.setdefault(record.flow_run_id, []).append(record)
        if not by_run:
            return
        with self._write() as conn:
            for run_id in sorted(by_run):
                self._lock(conn, LOCK_RUN_LOGS, run_id)  # numbered by one writer at a time
                last = int(
                    conn.execute(
                        "SELECT COALESCE(MAX(seq), 0) FROM flow_run_logs WHERE run_id = ?",
                        (run_id,),
                    ).fetchone()[0]
                )
                conn.many(
                    "INSERT INTO flow_run_logs (run_id, seq, at, stream, line, level, logger, "
                    "task_run_id) VALUES (?, ?, ?, 'prefect', ?, ?, ?, ?)",
                    [
                        (
                            run_id,
                            last + index,
                            utc_iso(record.timestamp),
                            record.message,
                            record.level,
                            record.logger,
                            record.task_run_id,
                        )
                        for index, record in enumerate(by_run[run_id], start=1)
                    ],
                )

    def run_logs(
        self, run_id: str, after: int = 0, min_level: int | None = None
    ) -> list[RunLogLine]:
        """Lines numbered after `after`, in order; with `min_level`, only Prefect's records
        at that level or above (process output has no level)."""
        sql = f"SELECT {_LOG_COLUMNS} FROM flow_run_logs WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after]
        if min_level is not None:
            sql += " AND level >= ?"
            params.append(min_level)
        rows = self._read(sql + " ORDER BY seq", params)
        return [RunLogLine(*row) for row in rows]

    # -- artifacts -------------------------------------------------------------------------

    def create_artifact(self, artifact: ArtifactRecord) -> ArtifactRecord:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO artifacts ({_ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    artifact.id,
                    artifact.key,
                    artifact.type,
                    artifact.description,
                    json.dumps(artifact.data),
                    artifact.flow_run_id,
                    artifact.task_run_id,
                    artifact.created_at,
                ),
            )
        return artifact

    def artifacts(self, flow_run_id: str) -> list[ArtifactRecord]:
        """The run's artifacts, oldest first (its tasks' included)."""
        rows = self._read(
            f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts WHERE flow_run_id = ? "
            "ORDER BY created_at, id",
            (flow_run_id,),
        )
        return [
            ArtifactRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), *row[5:])
            for row in rows
        ]
