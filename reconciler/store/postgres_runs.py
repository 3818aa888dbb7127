"""Flow runs, their logs and the workers' heartbeats in the PostgreSQL store.

**Claims.** Several workers on several machines claim from one pool at once, and pool, queue
and deployment concurrency limits must hold exactly, as they do on SQLite. Row locks alone
cannot give that: two claims that each lock different SCHEDULED runs (`SKIP LOCKED`) would both
count the same PENDING runs and both take the last free slot. So a claim first locks the pool's
row (`SELECT ... FOR NO KEY UPDATE`): claims on one pool run one after another, each seeing what
the previous one committed (READ COMMITTED reads the latest commit at each statement). Under
that lock it counts the active runs, reads the waiting candidates, and decides in Prefect's
order (reconciler/store/claims.py, shared with SQLite). A deployment with a concurrency limit
may have runs in several pools (it moved), so its slots are guarded too: an advisory lock per
such deployment, taken in name order after the pool's lock. Then it locks the chosen runs
with `FOR UPDATE SKIP LOCKED` and moves those to PENDING. A run that another transaction holds
at that moment (being cancelled, marked late, or deleted by an apply) is skipped: the claim
takes fewer, never one twice, never past a limit, and never waits on a lock while holding the
pool's (no deadlock with an apply, which may lock a pool after runs).

`FOR NO KEY UPDATE` rather than `FOR UPDATE`: it excludes other claims and updates of the pool,
but not the key-share locks that inserting a queue of that pool takes for its foreign key.

Other writers that lock several runs (marking late runs, crashing a dead worker's runs) skip
locked rows too, for the same reason.

**Wake-ups.** Creating runs, a run reaching a final state (a slot freed), and pools, queues
and deployments written all `NOTIFY reconciler_runs, '<pool>'` in their transaction (sent at
commit); PostgresStore.wait_for_runs listens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from reconciler.model import canonical_json
from reconciler.runs import (
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

Connection = psycopg.Connection[tuple[Any, ...]]

CHANNEL = "reconciler_runs"
# Advisory lock namespaces (the first key of pg_advisory_xact_lock(int, int)).
LOCK_MIGRATIONS = 0x5EC0
LOCK_DEPLOYMENT = 0x5EC1
LOCK_RUN_LOGS = 0x5EC2
INSERT_BATCH = 500
"""Runs per INSERT statement in create_runs (19 parameters each: far below the limit)."""

_RUN_PLACEHOLDERS = (
    "(%s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, NULL, NULL, NULL, %s, %s, %s, %s, %s)"
)
_RUN_COLUMN_NAMES = tuple(name.strip() for name in RUN_COLUMNS.split(","))
_RETURNING = ", ".join(f"flow_runs.{name}" for name in _RUN_COLUMN_NAMES)


def notify_pools(conn: Connection, pools: Iterable[str]) -> None:
    """Tell listeners, at commit, that runs of these pools may be claimable."""
    for pool in sorted(set(pools)):
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, pool))


def remove_future_scheduled_runs(
    conn: Connection, deployment: str, keep_schedules: Iterable[str]
) -> int:
    """Delete the deployment's auto-scheduled runs that have not started, except those of
    `keep_schedules`. Manual runs are never touched."""
    cursor = conn.execute(
        "DELETE FROM flow_runs WHERE deployment = %s AND schedule_id IS NOT NULL "
        f"AND state IN ({WAITING_SQL}) AND schedule_id <> ALL(%s)",
        (deployment, list(keep_schedules)),
    )
    return cursor.rowcount


def _run_values(new: NewRun, now: str) -> tuple[Any, ...]:
    run_id = new_run_id()
    history = [StateChange(RunState.SCHEDULED, now).to_json()]
    return (
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
    )


def _move(
    conn: Connection,
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
    change is appended in the same spelling, so it reads back exactly as SQLite's does."""
    if not run_ids:
        return {}
    change = json.dumps(StateChange(state, now, message).to_json())
    rows = conn.execute(
        "UPDATE flow_runs SET state = %s, state_message = %s, updated_at = %s, "
        f"{STATE_RESET_SQL}, history = CASE WHEN history = '[]' THEN '[' || %s || ']' "
        "ELSE left(history, -1) || ', ' || %s || ']' END, "
        "worker = COALESCE(%s, worker), infrastructure_id = COALESCE(%s, infrastructure_id), "
        "exit_code = COALESCE(%s, exit_code) "
        f"WHERE id = ANY(%s) RETURNING {_RETURNING}",
        (
            state.value,
            message,
            now,
            change,
            change,
            worker,
            infrastructure_id,
            exit_code,
            list(run_ids),
        ),
    ).fetchall()
    return {row[0]: run_from_row(row) for row in rows}


def _frees_or_offers(state: RunState) -> bool:
    """A move to this state frees a slot (final) or offers the run to claims (waiting)."""
    return state.is_final or state in WAITING_STATES


class PostgresRuns:
    """Mixed into PostgresStore: `_require()` gives the connection, `_small_write()` a write
    transaction outside the revisioned ones."""

    _conn: Connection | None

    def _small_write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by PostgresStore

    def _require(self) -> Connection:
        raise NotImplementedError  # provided by PostgresStore

    def _rows_of(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._require().execute(sql, params).fetchall()

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, new: NewRun) -> FlowRun:
        with self._small_write() as conn:
            row = conn.execute(
                f"INSERT INTO flow_runs ({INSERT_COLUMNS}) VALUES {_RUN_PLACEHOLDERS} "
                f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {RUN_COLUMNS}",
                _run_values(new, now_iso()),
            ).fetchone()
            if row is None:  # the key was used: that run
                row = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE idempotency_key = %s",
                    (new.idempotency_key,),
                ).fetchone()
                assert row is not None
            else:
                notify_pools(conn, [new.pool])
        return run_from_row(row)

    def create_runs(self, runs: Iterable[NewRun]) -> int:
        # In key order: two writers inserting the same keys wait for each other's uncommitted
        # rows, and would deadlock if each held a key the other reaches next.
        batch = sorted(runs, key=lambda new: new.idempotency_key or "")
        if not batch:
            return 0
        now = now_iso()
        pools: list[str] = []
        with self._small_write() as conn:
            for start in range(0, len(batch), INSERT_BATCH):
                chunk = batch[start : start + INSERT_BATCH]
                values = ", ".join(_RUN_PLACEHOLDERS for _ in chunk)
                params = [value for new in chunk for value in _run_values(new, now)]
                rows = conn.execute(
                    f"INSERT INTO flow_runs ({INSERT_COLUMNS}) VALUES {values} "
                    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING pool",
                    params,
                ).fetchall()
                pools.extend(row[0] for row in rows)
            notify_pools(conn, pools)
        return len(pools)

    def scheduled_ahead(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        if self._conn is None:
            return {}
        rows = self._rows_of(
            "SELECT deployment, schedule_id, COUNT(*), MAX(scheduled_time) FROM flow_runs "
            f"WHERE schedule_id IS NOT NULL AND state IN ({WAITING_SQL}) "
            "AND scheduled_time >= %s GROUP BY deployment, schedule_id",
            (now,),
        )
        return {(dep, sid): (int(count), latest) for dep, sid, count, latest in rows}

    def mark_late_runs(self, late_before: float, *, skip: bool = False) -> list[str]:
        if self._conn is None:
            return []
        due = self._rows_of(
            "SELECT 1 FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < %s LIMIT 1",
            (late_before,),
        )
        if not due:
            return []  # the common case, without writing
        with self._small_write() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM flow_runs WHERE state = 'SCHEDULED' AND scheduled_time < %s "
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
        if self._conn is None:
            return None
        rows = self._rows_of(f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id = %s", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def find_runs(self, prefix: str) -> list[FlowRun]:
        """Runs whose id starts with `prefix` (ids are long; people type the start)."""
        if self._conn is None:
            return []
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows_of(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE id LIKE %s LIMIT 5", (pattern,)
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
        where: list[str] = []
        params: list[Any] = []
        if deployment is not None:
            where.append("deployment = %s")
            params.append(deployment)
        if pool is not None:
            where.append("pool = %s")
            params.append(pool)
        if states is not None:
            where.append("state = ANY(%s)")
            params.append([s.value for s in states])
        sql = f"SELECT {RUN_COLUMNS} FROM flow_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY scheduled_time DESC, created_at DESC LIMIT %s"
        return [run_from_row(row) for row in self._rows_of(sql, (*params, limit))]

    def has_claimable_runs(self, pool: str, scheduled_before: float) -> bool:
        """A cheap read (no lock) that tells whether a claim could find anything."""
        if self._conn is None:
            return False
        rows = self._rows_of(
            f"SELECT 1 FROM flow_runs WHERE pool = %s AND state IN ({WAITING_SQL}) "
            "AND scheduled_time <= %s LIMIT 1",
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
        with self._small_write() as conn:
            pool_row = conn.execute(
                "SELECT spec FROM work_pools WHERE name = %s FOR NO KEY UPDATE", (pool,)
            ).fetchone()
            if pool_row is None:
                return []
            active = {
                queue: int(count)
                for queue, count in conn.execute(
                    f"SELECT queue, COUNT(*) FROM flow_runs WHERE pool = %s "
                    f"AND state IN ({ACTIVE_SQL}) GROUP BY queue",
                    (pool,),
                )
            }
            queue_rows = conn.execute(
                "SELECT name, spec FROM work_queues WHERE pool_name = %s", (pool,)
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
                f"SELECT id, queue, deployment FROM flow_runs WHERE pool = %s "
                f"AND state IN ({WAITING_SQL}) AND scheduled_time <= %s AND queue = ANY(%s) "
                "ORDER BY scheduled_time, created_at",
                (pool, scheduled_before, list(budget.queue_slots)),
            ).fetchall()
            if not candidates:
                return []
            limits = {
                key: deployment_limit(spec)
                for key, spec in conn.execute(
                    "SELECT key, spec FROM deployments WHERE key = ANY(%s)",
                    (sorted({run[2] for run in candidates}),),
                )
            }
            limited = sorted(key for key, (cap, _) in limits.items() if cap is not None)
            for key in limited:  # in name order: claims on two pools cannot deadlock
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_DEPLOYMENT, key)
                )
            running = {
                deployment: int(count)
                for deployment, count in conn.execute(
                    f"SELECT deployment, COUNT(*) FROM flow_runs WHERE state IN ({ACTIVE_SQL}) "
                    "AND deployment = ANY(%s) GROUP BY deployment",
                    (limited,),
                )
            }
            chosen, refused = choose_runs(candidates, budget, limits, running)
            held = {
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM flow_runs WHERE id = ANY(%s) AND state IN ({WAITING_SQL}) "
                    "ORDER BY id FOR UPDATE SKIP LOCKED",
                    ([*chosen, *refused],),
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
        with self._small_write() as conn:
            row = conn.execute(
                "SELECT state, pool FROM flow_runs WHERE id = %s FOR UPDATE", (run_id,)
            ).fetchone()
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
                notify_pools(conn, [row[1]])
        return moved.get(run_id)

    def cancel_run(self, run_id: str) -> FlowRun | None:
        """SCHEDULED or PENDING: CANCELLED at once. RUNNING: CANCELLING, for its worker to
        stop. Final: unchanged (returned as is)."""
        with self._small_write() as conn:
            row = conn.execute(
                "SELECT state, pool FROM flow_runs WHERE id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                return None
            current = RunState(row[0])
            if current in (RunState.SCHEDULED, RunState.LATE, RunState.PENDING):
                _move(conn, [run_id], RunState.CANCELLED, "cancelled by request", now_iso())
                notify_pools(conn, [row[1]])
            elif current is RunState.RUNNING:
                _move(conn, [run_id], RunState.CANCELLING, "cancel requested", now_iso())
        return self.get_run(run_id)

    # -- logs ------------------------------------------------------------------------------

    def append_run_logs(self, run_id: str, lines: Iterable[tuple[str, str]]) -> None:
        batch = list(lines)
        if not batch:
            return
        now = now_iso()
        with self._small_write() as conn:
            # Two writers of one run's lines take turns, so their numbers never collide.
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_RUN_LOGS, run_id))
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM flow_run_logs WHERE run_id = %s", (run_id,)
            ).fetchone()
            last = int(row[0]) if row else 0
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO flow_run_logs (run_id, seq, at, stream, line) "
                    "VALUES (%s, %s, %s, %s, %s)",
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
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (pool, name) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, "
                "heartbeat_interval = excluded.heartbeat_interval",
                (pool, worker, now, interval, now_iso()),
            )

    def remove_worker(self, pool: str, worker: str) -> None:
        with self._small_write() as conn:
            conn.execute("DELETE FROM workers WHERE pool = %s AND name = %s", (pool, worker))

    def workers(self, pool: str | None = None) -> list[WorkerRecord]:
        if self._conn is None:
            return []
        sql = "SELECT pool, name, heartbeat_at, heartbeat_interval, started_at FROM workers"
        rows = (
            self._rows_of(sql + ' WHERE pool = %s ORDER BY name COLLATE "C"', (pool,))
            if pool is not None
            else self._rows_of(sql + ' ORDER BY pool COLLATE "C", name COLLATE "C"')
        )
        return [WorkerRecord(*row) for row in rows]

    def crash_orphaned_runs(self, *, missed_beats: int = 3, worker: str | None = None) -> list[str]:
        """Runs held by a worker that stopped heartbeating (or, with `worker`, by that worker
        whatever its heartbeat: it restarted) become CRASHED; returns their ids."""
        now = time.time()
        crashed: list[str] = []
        with self._small_write() as conn:
            rows = conn.execute(
                "SELECT r.id, r.worker, w.heartbeat_at, w.heartbeat_interval, r.pool "
                f"FROM flow_runs r LEFT JOIN workers w ON {WORKER_OF_RUN_SQL} "
                f"WHERE r.state IN ({ACTIVE_SQL}) AND {HAS_WORKER_SQL} "
                "ORDER BY r.id FOR UPDATE OF r SKIP LOCKED"
            ).fetchall()
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
            notify_pools(conn, pools)
        return crashed

    def iter_active_runs(self, worker: str) -> Iterator[FlowRun]:
        if self._conn is None:
            return iter(())
        rows = self._rows_of(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE worker = %s AND state IN ({ACTIVE_SQL})",
            (worker,),
        )
        return iter([run_from_row(row) for row in rows])
