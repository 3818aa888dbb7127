"""Flow runs, their logs and the workers' heartbeats in the SQLite store.

The claim is the heart of it: in one `BEGIN IMMEDIATE` transaction (SQLite's writer lock), the
pool's and queues' pause flags and concurrency limits are read, PENDING and RUNNING runs are
counted, and the next SCHEDULED runs are picked in Prefect's order (queue priority, then
scheduled time; reconciler/store/claims.py decides) and moved to PENDING under the worker's
name. No other writer can interleave, so no run is claimed twice and limits hold exactly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager

from reconciler.model import canonical_json
from reconciler.runs import (
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


def _insert_run(
    conn: sqlite3.Connection, new: NewRun, now: str, *, ignore_duplicate: bool = False
) -> str | None:
    """Insert one SCHEDULED run; with `ignore_duplicate`, None when its key exists."""
    run_id = new_run_id()
    history = [StateChange(RunState.SCHEDULED, now).to_json()]
    verb = "INSERT OR IGNORE" if ignore_duplicate else "INSERT"
    cursor = conn.execute(
        f"{verb} INTO flow_runs ({INSERT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?, ?)",
        (
            run_id,
            new.name or run_name(run_id),
            new.deployment,
            new.flow_name,
            new.pool,
            new.queue,
            RunState.SCHEDULED.value,
            new.scheduled_time,
            canonical_json(new.parameters),
            canonical_json(new.job_variables),
            now,
            now,
            json.dumps(history),
            new.idempotency_key,
            new.schedule_id,
        ),
    )
    return run_id if cursor.rowcount else None


def _deployment_limits(
    conn: sqlite3.Connection, keys: set[str]
) -> dict[str, tuple[int | None, str | None]]:
    """Each deployment's concurrency limit and collision strategy (ENQUEUE by default)."""
    if not keys:
        return {}
    marks = ", ".join("?" for _ in keys)
    rows = conn.execute(f"SELECT key, spec FROM deployments WHERE key IN ({marks})", tuple(keys))
    return {key: deployment_limit(spec) for key, spec in rows}


def remove_future_scheduled_runs(
    conn: sqlite3.Connection, deployment: str, keep_schedules: Iterable[str]
) -> int:
    """Delete the deployment's auto-scheduled runs that have not started, except those of
    `keep_schedules`. Manual runs are never touched."""
    keep = list(keep_schedules)
    marks = ", ".join("?" for _ in keep)
    sql = (
        f"DELETE FROM flow_runs WHERE deployment = ? AND schedule_id IS NOT NULL "
        f"AND state IN ({WAITING_SQL})"
    )
    if keep:
        sql += f" AND schedule_id NOT IN ({marks})"
    return conn.execute(sql, (deployment, *keep)).rowcount


class SqliteRuns:
    """Mixed into SqliteStore: `_require()` gives the connection, `_small_write()` a write
    transaction outside the revisioned ones."""

    _conn: sqlite3.Connection | None

    def _small_write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # provided by SqliteStore

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, new: NewRun) -> FlowRun:
        with self._small_write() as conn:
            if new.idempotency_key is not None:
                row = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE idempotency_key = ?",
                    (new.idempotency_key,),
                ).fetchone()
                if row is not None:
                    return run_from_row(row)
            run_id = _insert_run(conn, new, now_iso())
        assert run_id is not None
        found = self.get_run(run_id)
        assert found is not None
        return found

    def create_runs(self, runs: Iterable[NewRun]) -> int:
        batch = list(runs)
        if not batch:
            return 0
        created = 0
        now = now_iso()
        with self._small_write() as conn:
            for new in batch:
                created += _insert_run(conn, new, now, ignore_duplicate=True) is not None
        return created

    def scheduled_ahead(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        if self._conn is None:
            return {}
        rows = self._conn.execute(
            "SELECT deployment, schedule_id, COUNT(*), MAX(scheduled_time) FROM flow_runs "
            f"WHERE schedule_id IS NOT NULL AND state IN ({WAITING_SQL}) "
            "AND scheduled_time >= ? GROUP BY deployment, schedule_id",
            (now,),
        )
        return {(dep, sid): (count, latest) for dep, sid, count, latest in rows}

    def mark_late_runs(self, late_before: float, *, skip: bool = False) -> list[str]:
        if (
            self._conn is not None
            and not self._conn.execute(
                "SELECT 1 FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < ? LIMIT 1",
                (late_before,),
            ).fetchone()
        ):
            return []  # the common case, without taking the write lock
        with self._small_write() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < ?",
                    (late_before,),
                )
            ]
            now = now_iso()
            for run_id in ids:
                if skip:
                    message = "skipped: not started within the grace period of its scheduled time"
                    self._move(conn, run_id, RunState.CANCELLED, message, now)
                else:
                    message = "not started within the grace period of its scheduled time"
                    self._move(conn, run_id, RunState.LATE, message, now)
        return ids

    def get_run(self, run_id: str) -> FlowRun | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return run_from_row(row) if row else None

    def find_runs(self, prefix: str) -> list[FlowRun]:
        """Runs whose id starts with `prefix` (ids are long; people type the start)."""
        if self._conn is None:
            return []
        rows = self._conn.execute(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id LIKE ? || '%' LIMIT 5", (prefix,)
        )
        return [run_from_row(row) for row in rows]

    def list_runs(
        self,
        *,
        deployment: str | None = None,
        states: Iterable[RunState] | None = None,
        pool: str | None = None,
        limit: int = 100,
    ) -> list[FlowRun]:
        if self._conn is None:
            return []
        where, params = [], []
        if deployment is not None:
            where.append("deployment = ?")
            params.append(deployment)
        if pool is not None:
            where.append("pool = ?")
            params.append(pool)
        wanted = [s.value for s in states] if states is not None else None
        if wanted is not None:
            where.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        sql = f"SELECT {RUN_COLUMNS} FROM flow_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY scheduled_time DESC, created_at DESC LIMIT ?"
        return [run_from_row(row) for row in self._conn.execute(sql, (*params, limit))]

    def has_claimable_runs(self, pool: str, scheduled_before: float) -> bool:
        """A cheap read (no write lock) that tells whether a claim could find anything."""
        if self._conn is None:
            return False
        row = self._conn.execute(
            f"SELECT 1 FROM flow_runs WHERE pool = ? AND state IN ({WAITING_SQL}) "
            "AND scheduled_time <= ? LIMIT 1",
            (pool, scheduled_before),
        ).fetchone()
        return row is not None

    def claim_runs(
        self,
        pool: str,
        worker: str,
        *,
        limit: int,
        scheduled_before: float,
        queues: Iterable[str] | None = None,
    ) -> list[FlowRun]:
        if limit <= 0:
            return []
        wanted_queues = set(queues) if queues is not None else None
        with self._small_write() as conn:
            pool_row = conn.execute(
                "SELECT spec FROM work_pools WHERE name = ?", (pool,)
            ).fetchone()
            if pool_row is None:
                return []
            active = dict(
                conn.execute(
                    f"SELECT queue, COUNT(*) FROM flow_runs WHERE pool = ? "
                    f"AND state IN ({ACTIVE_SQL}) GROUP BY queue",
                    (pool,),
                ).fetchall()
            )
            queue_rows = conn.execute(
                "SELECT name, spec FROM work_queues WHERE pool_name = ?", (pool,)
            ).fetchall()
            budget = claim_budget(
                json.loads(pool_row[0]),
                queue_rows,
                active,
                limit=limit,
                wanted_queues=wanted_queues,
            )
            if budget.empty:
                return []
            candidates = conn.execute(
                f"SELECT id, queue, deployment FROM flow_runs WHERE pool = ? "
                f"AND state IN ({WAITING_SQL}) AND scheduled_time <= ? "
                "ORDER BY scheduled_time, created_at",
                (pool, scheduled_before),
            ).fetchall()
            limits = _deployment_limits(conn, {run[2] for run in candidates})
            running = dict(
                conn.execute(
                    f"SELECT deployment, COUNT(*) FROM flow_runs WHERE state IN ({ACTIVE_SQL}) "
                    "GROUP BY deployment"
                ).fetchall()
            )
            chosen, refused = choose_runs(candidates, budget, limits, running)
            now = now_iso()
            for run_id in refused:
                self._move(conn, run_id, RunState.CANCELLED, DEPLOYMENT_LIMIT_REACHED, now)
            for run_id in chosen:
                self._move(
                    conn, run_id, RunState.PENDING, f"claimed by {worker}", now, worker=worker
                )
        return [run for run in (self.get_run(run_id) for run_id in chosen) if run is not None]

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
        with self._small_write() as conn:
            row = conn.execute("SELECT state FROM flow_runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            current = RunState(row[0])
            if current.is_final or (allowed is not None and current.value not in allowed):
                return None
            self._move(
                conn,
                run_id,
                state,
                message,
                now_iso(),
                infrastructure_id=infrastructure_id,
                exit_code=exit_code,
            )
        return self.get_run(run_id)

    def cancel_run(self, run_id: str) -> FlowRun | None:
        """SCHEDULED or PENDING: CANCELLED at once. RUNNING: CANCELLING, for its worker to
        stop. Final: unchanged (returned as is)."""
        with self._small_write() as conn:
            row = conn.execute("SELECT state FROM flow_runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            current = RunState(row[0])
            if current in (RunState.SCHEDULED, RunState.LATE, RunState.PENDING):
                self._move(conn, run_id, RunState.CANCELLED, "cancelled by request", now_iso())
            elif current is RunState.RUNNING:
                self._move(conn, run_id, RunState.CANCELLING, "cancel requested", now_iso())
        return self.get_run(run_id)

    def _move(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        state: RunState,
        message: str | None,
        now: str,
        *,
        worker: str | None = None,
        infrastructure_id: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        history = json.loads(
            conn.execute("SELECT history FROM flow_runs WHERE id = ?", (run_id,)).fetchone()[0]
        )
        history.append(StateChange(state, now, message).to_json())
        conn.execute(
            "UPDATE flow_runs SET state = ?, state_message = ?, updated_at = ?, history = ?, "
            f"{STATE_RESET_SQL}, worker = COALESCE(?, worker), "
            "infrastructure_id = COALESCE(?, infrastructure_id), "
            "exit_code = COALESCE(?, exit_code) WHERE id = ?",
            (
                state.value,
                message,
                now,
                json.dumps(history),
                worker,
                infrastructure_id,
                exit_code,
                run_id,
            ),
        )

    # -- logs ------------------------------------------------------------------------------

    def append_run_logs(self, run_id: str, lines: Iterable[tuple[str, str]]) -> None:
        batch = list(lines)
        if not batch:
            return
        now = now_iso()
        with self._small_write() as conn:
            last = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM flow_run_logs WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO flow_run_logs (run_id, seq, at, stream, line) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, last + index, now, stream, line)
                    for index, (stream, line) in enumerate(batch, start=1)
                ],
            )

    # -- workers ---------------------------------------------------------------------------

    def heartbeat(self, pool: str, worker: str, interval: float) -> None:
        now = time.time()
        with self._small_write() as conn:
            conn.execute(
                "INSERT INTO workers (pool, name, heartbeat_at, heartbeat_interval, started_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (pool, name) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, "
                "heartbeat_interval = excluded.heartbeat_interval",
                (pool, worker, now, interval, now_iso()),
            )

    def remove_worker(self, pool: str, worker: str) -> None:
        with self._small_write() as conn:
            conn.execute("DELETE FROM workers WHERE pool = ? AND name = ?", (pool, worker))

    def workers(self, pool: str | None = None) -> list[WorkerRecord]:
        if self._conn is None:
            return []
        sql = "SELECT pool, name, heartbeat_at, heartbeat_interval, started_at FROM workers"
        rows = (
            self._conn.execute(sql + " WHERE pool = ? ORDER BY name", (pool,))
            if pool is not None
            else self._conn.execute(sql + " ORDER BY pool, name")
        )
        return [WorkerRecord(*row) for row in rows]

    def crash_orphaned_runs(self, *, missed_beats: int = 3, worker: str | None = None) -> list[str]:
        """Runs held by a worker that stopped heartbeating (or, with `worker`, by that worker
        whatever its heartbeat: it restarted) become CRASHED; returns their ids."""
        now = time.time()
        crashed: list[str] = []
        with self._small_write() as conn:
            rows = conn.execute(
                f"SELECT r.id, r.worker, w.heartbeat_at, w.heartbeat_interval FROM flow_runs r "
                f"LEFT JOIN workers w ON {WORKER_OF_RUN_SQL} "
                f"WHERE r.state IN ({ACTIVE_SQL}) AND {HAS_WORKER_SQL}"
            ).fetchall()
            rows = freshest_beat_per_run(rows)
            stamp = now_iso()
            for run_id, holder, beat, interval in rows:
                if worker is not None:
                    dead = holder == worker
                    reason = f"worker {holder} restarted while the run was in progress"
                else:
                    dead = beat is None or now - beat > interval * missed_beats
                    reason = f"worker {holder} stopped heartbeating"
                if dead:
                    self._move(conn, run_id, RunState.CRASHED, reason, stamp)
                    crashed.append(run_id)
        return crashed

    def iter_active_runs(self, worker: str) -> Iterator[FlowRun]:
        if self._conn is None:
            return iter(())
        rows = self._conn.execute(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE worker = ? AND state IN ({ACTIVE_SQL})",
            (worker,),
        )
        return iter([run_from_row(row) for row in rows])
