"""Flow runs, their logs and the workers' heartbeats in the SQL store (SQLite and PostgreSQL).

**Claims.** Several workers claim from one pool at once, and pool, queue and deployment
concurrency limits must hold exactly. In one write, a claim reads the pool's row, counts the
active runs, reads the waiting candidates, and decides in Prefect's order (queue priority, then
scheduled time; reconciler/store/claims.py decides); then it moves the chosen runs to PENDING
under the worker's name.

- SQLite: the write is `BEGIN IMMEDIATE`, the file's one writer lock; no other writer can
  interleave, and the row-lock clauses below are dropped (store/sql.py).
- PostgreSQL: row locks alone cannot give exact limits (two claims that each lock different
  SCHEDULED runs would both count the same PENDING runs and both take the last free slot). So
  a claim first locks the pool's row (`FOR NO KEY UPDATE`: it excludes other claims and updates
  of the pool, but not the key-share locks that inserting a queue of that pool takes for its
  foreign key): claims on one pool run one after another, each seeing what the previous one
  committed (READ COMMITTED reads the latest commit at each statement). A deployment with a
  concurrency limit may have runs in several pools (it moved), so its slots are guarded by an
  advisory lock per such deployment, taken in name order after the pool's lock. Then the
  chosen runs are locked `FOR UPDATE SKIP LOCKED`: a run another transaction holds at that
  moment (being cancelled, marked late, or deleted by an apply) is skipped; the claim takes
  fewer, never one twice, never past a limit, and never waits on a lock while holding the
  pool's (no deadlock with an apply, which may lock a pool after runs). Other writers that lock
  several runs (marking late runs, crashing a dead worker's runs) skip locked rows too.

**Wake-ups.** Creating runs, a run reaching a final state (a slot freed), and pools, queues
and deployments written all `_notify()` (PostgreSQL's NOTIFY, sent at commit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from reconciler.model.resources import canonical_json
from reconciler.model.runs import (
    WAITING_STATES,
    FlowRun,
    NewRun,
    RunState,
    StateChange,
    WorkerRecord,
    new_run_id,
    run_name,
)
from reconciler.store.claims import (
    DEPLOYMENT_LIMIT_REACHED,
    choose_runs,
    claim_budget,
    deployment_limit,
)
from reconciler.store.run_events import emit_run_states
from reconciler.store.run_rows import (
    ACTIVE_SQL,
    HAS_WORKER_SQL,
    INSERT_COLUMNS,
    RUN_COLUMNS,
    STATE_RESET_SQL,
    WAITING_SQL,
    WORKER_OF_RUN_SQL,
    freshest_beat_per_run,
    now_iso,
    run_from_row,
)
from reconciler.store.sql import Conn
from reconciler.store.sql_store import LOCK_DEPLOYMENT, LOCK_RUN_LOGS, SqlStoreBase

INSERT_BATCH = 500
"""Runs per INSERT statement in create_runs (16 parameters each: far below either
database's limit)."""

_RUN_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?, ?)"


def _run_values(new: NewRun, now: str) -> tuple[Any, ...]:
    run_id = new_run_id()
    history = [StateChange(RunState.SCHEDULED, now, new.state_message).to_json()]
    return (
        run_id,
        new.name or run_name(run_id),
        new.deployment,
        new.flow_name,
        new.pool,
        new.queue,
        RunState.SCHEDULED.value,
        new.state_message,
        new.scheduled_time,
        canonical_json(new.parameters),
        canonical_json(new.job_variables),
        now,
        now,
        json.dumps(history),
        new.idempotency_key,
        new.schedule_id,
    )


def insert_runs(conn: Conn, runs: Iterable[NewRun], now: str) -> list[FlowRun]:
    """Inside a write: create these runs, each with its SCHEDULED event; a run whose
    idempotency key is taken already is not created. Returns the runs created."""
    # In key order: two PostgreSQL writers inserting the same keys wait for each other's
    # uncommitted rows, and would deadlock if each held a key the other reaches next.
    batch = sorted(runs, key=lambda new: new.idempotency_key or "")
    made: list[FlowRun] = []
    for start in range(0, len(batch), INSERT_BATCH):
        chunk = batch[start : start + INSERT_BATCH]
        values = ", ".join(_RUN_MARKS for _ in chunk)
        params = [value for new in chunk for value in _run_values(new, now)]
        created = [
            run_from_row(row)
            for row in conn.all(
                f"INSERT INTO flow_runs ({INSERT_COLUMNS}) VALUES {values} "
                f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {RUN_COLUMNS}",
                params,
            )
        ]
        emit_run_states(conn, created, {}, now)
        made.extend(created)
    return made


def _move(
    conn: Conn,
    run_ids: Sequence[str],
    state: RunState,
    message: str | None,
    now: str,
    *,
    worker: str | None = None,
    infrastructure_id: str | None = None,
    exit_code: int | None = None,
) -> dict[str, FlowRun]:
    """Move these runs (locked by the caller) to `state`, appending to their history; returns
    them as they are afterwards. The history is a JSON array written by json.dumps, and the
    change is appended in the same spelling, so it reads back as if json.dumps wrote it all."""
    if not run_ids:
        return {}
    change = json.dumps(StateChange(state, now, message).to_json())
    chosen, params = conn.dialect.in_list("id", run_ids)
    previous = {
        row[0]: RunState(row[1])
        for row in conn.all(f"SELECT id, state FROM flow_runs WHERE {chosen}", params)
    }
    rows = conn.all(
        "UPDATE flow_runs SET state = ?, state_message = ?, updated_at = ?, "
        f"{STATE_RESET_SQL}, history = CASE WHEN history = '[]' THEN '[' || ? || ']' "
        "ELSE substr(history, 1, length(history) - 1) || ', ' || ? || ']' END, "
        "worker = COALESCE(?, worker), infrastructure_id = COALESCE(?, infrastructure_id), "
        f"exit_code = COALESCE(?, exit_code) WHERE {chosen} RETURNING {RUN_COLUMNS}",
        (state.value, message, now, change, change, worker, infrastructure_id, exit_code, *params),
    )
    moved = {row[0]: run_from_row(row) for row in rows}
    emit_run_states(conn, list(moved.values()), previous, now)
    return moved


def _frees_or_offers(state: RunState) -> bool:
    """A move to this state frees a slot (final) or offers the run to claims (waiting)."""
    return state.is_final or state in WAITING_STATES


class SqlRuns(SqlStoreBase):
    """Runs, logs and workers; mixed into SqlStore's backends."""

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, new: NewRun) -> FlowRun:
        now = now_iso()
        with self._write() as conn:
            row = conn.one(
                f"INSERT INTO flow_runs ({INSERT_COLUMNS}) VALUES {_RUN_MARKS} "
                f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {RUN_COLUMNS}",
                _run_values(new, now),
            )
            if row is None:  # the key was used: that run
                row = conn.one(
                    f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE idempotency_key = ?",
                    (new.idempotency_key,),
                )
                assert row is not None
            else:
                emit_run_states(conn, [run_from_row(row)], {}, now)
                self._notify(conn, [new.pool])
        return run_from_row(row)

    def create_runs(self, runs: Iterable[NewRun]) -> int:
        with self._write() as conn:
            created = insert_runs(conn, runs, now_iso())
            self._notify(conn, [run.pool for run in created])
        return len(created)

    def scheduled_ahead(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        rows = self._read(
            "SELECT deployment, schedule_id, COUNT(*), MAX(scheduled_time) FROM flow_runs "
            f"WHERE schedule_id IS NOT NULL AND state IN ({WAITING_SQL}) "
            "AND scheduled_time >= ? GROUP BY deployment, schedule_id",
            (now,),
        )
        return {(dep, sid): (int(count), latest) for dep, sid, count, latest in rows}

    def mark_late_runs(self, late_before: float, *, skip: bool = False) -> list[str]:
        due = self._read(
            "SELECT 1 FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < ? LIMIT 1",
            (late_before,),
        )
        if not due:
            return []  # the common case, without taking a write lock
        with self._write() as conn:
            ids = [
                row[0]
                for row in conn.all(
                    "SELECT id FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < ? "
                    "ORDER BY scheduled_time, id FOR UPDATE SKIP LOCKED",
                    (late_before,),
                )
            ]
            if skip:
                message = "skipped: not started within the grace period of its scheduled time"
                _move(conn, ids, RunState.CANCELLED, message, now_iso())
            else:
                message = "not started within the grace period of its scheduled time"
                _move(conn, ids, RunState.LATE, message, now_iso())
        return ids

    def get_run(self, run_id: str) -> FlowRun | None:
        rows = self._read(f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def find_runs(self, prefix: str) -> list[FlowRun]:
        """Runs whose id starts with `prefix` (ids are long; people type the start), or whose
        name is `prefix`."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id LIKE ? ESCAPE '\\' OR name = ? LIMIT 5",
            (pattern, prefix),
        )
        return [run_from_row(row) for row in rows]

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
        where: list[str] = []
        params: list[Any] = []
        if deployment is not None:
            where.append("deployment = ?")
            params.append(deployment)
        if pool is not None:
            where.append("pool = ?")
            params.append(pool)
        if states is not None:
            wanted, values = self.dialect.in_list("state", [s.value for s in states])
            where.append(wanted)
            params.extend(values)
        if scheduled_after is not None:
            where.append("scheduled_time > ?")
            params.append(scheduled_after)
        if scheduled_until is not None:
            where.append("scheduled_time <= ?")
            params.append(scheduled_until)
        sql = f"SELECT {RUN_COLUMNS} FROM flow_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "ASC" if oldest_first else "DESC"
        sql += f" ORDER BY scheduled_time {order}, created_at {order} LIMIT ?"
        return [run_from_row(row) for row in self._read(sql, (*params, limit))]

    def has_claimable_runs(self, pool: str, scheduled_before: float) -> bool:
        """A cheap read (no write lock) that tells whether a claim could find anything."""
        rows = self._read(
            f"SELECT 1 FROM flow_runs WHERE pool = ? AND state IN ({WAITING_SQL}) "
            "AND scheduled_time <= ? LIMIT 1",
            (pool, scheduled_before),
        )
        return bool(rows)

    def claim_runs(
        self,
        pool: str,
        worker: str,
        *,
        limit: int,
        scheduled_before: float,
        queues: Iterable[str] | None = None,
    ) -> list[FlowRun]:
        """See the module docstring for how this stays exact with many workers."""
        if limit <= 0:
            return []
        wanted_queues = set(queues) if queues is not None else None
        in_list = self.dialect.in_list
        with self._write() as conn:
            pool_row = conn.one(
                "SELECT spec FROM work_pools WHERE name = ? FOR NO KEY UPDATE", (pool,)
            )
            if pool_row is None:
                return []
            active = {
                queue: int(count)
                for queue, count in conn.all(
                    f"SELECT queue, COUNT(*) FROM flow_runs WHERE pool = ? "
                    f"AND state IN ({ACTIVE_SQL}) GROUP BY queue",
                    (pool,),
                )
            }
            queue_rows = conn.all("SELECT name, spec FROM work_queues WHERE pool_name = ?", (pool,))
            budget = claim_budget(
                json.loads(pool_row[0]),
                queue_rows,
                active,
                limit=limit,
                wanted_queues=wanted_queues,
            )
            if budget.empty:
                return []
            open_queues, queue_params = in_list("queue", list(budget.queue_slots))
            candidates = conn.all(
                f"SELECT id, queue, deployment FROM flow_runs WHERE pool = ? "
                f"AND state IN ({WAITING_SQL}) AND scheduled_time <= ? AND {open_queues} "
                "ORDER BY scheduled_time, created_at",
                (pool, scheduled_before, *queue_params),
            )
            if not candidates:
                return []
            keys, key_params = in_list("key", sorted({run[2] for run in candidates}))
            limits = {
                key: deployment_limit(spec)
                for key, spec in conn.all(
                    f"SELECT key, spec FROM deployments WHERE {keys}", key_params
                )
            }
            limited = sorted(key for key, (cap, _) in limits.items() if cap is not None)
            for key in limited:  # in name order: claims on two pools cannot deadlock
                self._lock(conn, LOCK_DEPLOYMENT, key)
            running: dict[str, int] = {}
            if limited:
                of_limited, limited_params = in_list("deployment", limited)
                running = {
                    deployment: int(count)
                    for deployment, count in conn.all(
                        f"SELECT deployment, COUNT(*) FROM flow_runs "
                        f"WHERE state IN ({ACTIVE_SQL}) AND {of_limited} GROUP BY deployment",
                        limited_params,
                    )
                }
            chosen, refused = choose_runs(candidates, budget, limits, running)
            if not chosen and not refused:
                return []
            ids, id_params = in_list("id", [*chosen, *refused])
            held = {
                row[0]
                for row in conn.all(
                    f"SELECT id FROM flow_runs WHERE {ids} AND state IN ({WAITING_SQL}) "
                    "ORDER BY id FOR UPDATE SKIP LOCKED",
                    id_params,
                )
            }
            now = now_iso()
            _move(
                conn,
                [run_id for run_id in refused if run_id in held],
                RunState.CANCELLED,
                DEPLOYMENT_LIMIT_REACHED,
                now,
            )
            moved = _move(
                conn,
                [run_id for run_id in chosen if run_id in held],
                RunState.PENDING,
                f"claimed by {worker}",
                now,
                worker=worker,
            )
        return [moved[run_id] for run_id in chosen if run_id in moved]

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
        """Move a run to `state` when its current state is one of `expected` (any non-final
        state when None). Returns the run as it is afterwards, or None when it was not moved."""
        allowed = {s.value for s in expected} if expected is not None else None
        with self._write() as conn:
            row = conn.one("SELECT state, pool FROM flow_runs WHERE id = ? FOR UPDATE", (run_id,))
            if row is None:
                return None
            current = RunState(row[0])
            if current.is_final or (allowed is not None and current.value not in allowed):
                return None
            moved = _move(
                conn,
                [run_id],
                state,
                message,
                now_iso(),
                infrastructure_id=infrastructure_id,
                exit_code=exit_code,
            )
            if _frees_or_offers(state):
                self._notify(conn, [row[1]])
        return moved.get(run_id)

    def cancel_run(self, run_id: str) -> FlowRun | None:
        """SCHEDULED or PENDING: CANCELLED at once. RUNNING: CANCELLING, for its worker to
        stop. Final: unchanged (returned as is)."""
        with self._write() as conn:
            row = conn.one("SELECT state, pool FROM flow_runs WHERE id = ? FOR UPDATE", (run_id,))
            if row is None:
                return None
            current = RunState(row[0])
            if current in (RunState.SCHEDULED, RunState.LATE, RunState.PENDING):
                _move(conn, [run_id], RunState.CANCELLED, "cancelled by request", now_iso())
                self._notify(conn, [row[1]])
            elif current is RunState.RUNNING:
                _move(conn, [run_id], RunState.CANCELLING, "cancel requested", now_iso())
        return self.get_run(run_id)

    # -- logs ------------------------------------------------------------------------------

    def append_run_logs(self, run_id: str, lines: Iterable[tuple[str, str]]) -> None:
        batch = list(lines)
        if not batch:
            return
        now = now_iso()
        with self._write() as conn:
            # Two writers of one run's lines take turns, so their numbers never collide.
            self._lock(conn, LOCK_RUN_LOGS, run_id)
            row = conn.one(
                "SELECT COALESCE(MAX(seq), 0) FROM flow_run_logs WHERE run_id = ?", (run_id,)
            )
            last = int(row[0]) if row else 0
            conn.many(
                "INSERT INTO flow_run_logs (run_id, seq, at, stream, line) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, last + index, now, stream, line)
                    for index, (stream, line) in enumerate(batch, start=1)
                ],
            )

    # -- workers ---------------------------------------------------------------------------

    def heartbeat(self, pool: str, worker: str, interval: float) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO workers (pool, name, heartbeat_at, heartbeat_interval, started_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (pool, name) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, "
                "heartbeat_interval = excluded.heartbeat_interval",
                (pool, worker, now, interval, now_iso()),
            )

    def remove_worker(self, pool: str, worker: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM workers WHERE pool = ? AND name = ?", (pool, worker))

    def workers(self, pool: str | None = None) -> list[WorkerRecord]:
        sql = "SELECT pool, name, heartbeat_at, heartbeat_interval, started_at FROM workers"
        rows = (
            self._read(sql + ' WHERE pool = ? ORDER BY name COLLATE "C"', (pool,))
            if pool is not None
            else self._read(sql + ' ORDER BY pool COLLATE "C", name COLLATE "C"')
        )
        return [WorkerRecord(*row) for row in rows]

    def crash_orphaned_runs(self, *, missed_beats: int = 3, worker: str | None = None) -> list[str]:
        """Runs held by a worker that stopped heartbeating (or, with `worker`, by that worker
        whatever its heartbeat: it restarted) become CRASHED; returns their ids."""
        now = time.time()
        crashed: list[str] = []
        with self._write() as conn:
            rows = conn.all(
                "SELECT r.id, r.worker, w.heartbeat_at, w.heartbeat_interval, r.pool "
                f"FROM flow_runs r LEFT JOIN workers w ON {WORKER_OF_RUN_SQL} "
                f"WHERE r.state IN ({ACTIVE_SQL}) AND {HAS_WORKER_SQL} "
                "ORDER BY r.id FOR UPDATE OF r SKIP LOCKED"
            )
            rows = freshest_beat_per_run(rows)
            stamp = now_iso()
            pools: list[str] = []
            for run_id, holder, beat, interval, pool in rows:
                if worker is not None:
                    dead = holder == worker
                    reason = f"worker {holder} restarted while the run was in progress"
                else:
                    dead = beat is None or now - beat > interval * missed_beats
                    reason = f"worker {holder} stopped heartbeating"
                if dead:
                    _move(conn, [run_id], RunState.CRASHED, reason, stamp)
                    crashed.append(run_id)
                    pools.append(pool)
            self._notify(conn, pools)
        return crashed

    def iter_active_runs(self, worker: str) -> Iterator[FlowRun]:
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE worker = ? AND state IN ({ACTIVE_SQL})",
            (worker,),
        )
        return iter([run_from_row(row) for row in rows])
