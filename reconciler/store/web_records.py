"""What the web API and dashboard (reconciler/web) keep and read beyond the other records,
written once for both store backends (mixed in like prefect_records.py, with the same
store hooks of `SqlStoreBase`: `_write()` and `_read()`).

- the audit log: every action taken through the API or the dashboard (who, what, on what,
  when, with what outcome), appended, never changed;
- repositories whose automatic sync is suspended (the daemon then attempts them only when
  asked to: "sync now");
- flow runs a page at a time (filters on deployment, states and scheduled time; a keyset
  cursor, so page 1,000 costs what page 1 does) and counted by hour and state for a chart.

Each write is one atomic write of its own; none changes the revision.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.model.resources import Kind, Owner, Resource
from reconciler.model.runs import FlowRun
from reconciler.store.run_rows import ACTIVE_SQL, RUN_COLUMNS, now_iso, run_from_row
from reconciler.store.sql import POSTGRESQL
from reconciler.store.sql_store import SqlStoreBase
from reconciler.store.web_types import AuditEntry, RunBuckets, RunQuery, SuspendedSync


class WebRecords(SqlStoreBase):
    """Mixed into both store backends; see the module docstring."""

    # -- audit log -------------------------------------------------------------------------

    def record_audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> int:
        with self._write() as conn:
            row = conn.execute(
                (
                    "INSERT INTO audit_log (at, actor, action, target, detail) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id"
                ),
                (now_iso(), actor, action, target, json.dumps(detail, sort_keys=True)),
            ).fetchone()
        return int(row[0])

    def audit_log(
        self, *, limit: int = 50, before: int | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        rows = self._read(
            "SELECT id, at, actor, action, target, detail FROM audit_log "
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- suspended syncs -------------------------------------------------------------------

    def set_sync_suspended(self, name: str, suspended: bool, actor: str) -> bool:
        with self._write() as conn:
            if suspended:
                cursor = conn.execute(
                    (
                        "INSERT INTO sync_suspended (name, suspended_at, actor) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO NOTHING"
                    ),
                    (name, now_iso(), actor),
                )
            else:
                cursor = conn.execute(("DELETE FROM sync_suspended WHERE name = ?"), (name,))
            return bool(cursor.rowcount)

    def suspended_syncs(self) -> list[SuspendedSync]:
        rows = self._read("SELECT name, suspended_at, actor FROM sync_suspended ORDER BY name")
        return [SuspendedSync(r[0], r[1], r[2]) for r in rows]

    # -- runs ------------------------------------------------------------------------------

    def query_runs(self, query: RunQuery) -> list[FlowRun]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if query.deployment is not None:
            where.append("deployment = ?")
            params.append(query.deployment)
        if query.states:
            where.append(f"state IN ({', '.join('?' for _ in query.states)})")
            params += [state.value for state in query.states]
        if query.scheduled_after is not None:
            where.append("scheduled_time >= ?")
            params.append(query.scheduled_after)
        if query.scheduled_before is not None:
            where.append("scheduled_time < ?")
            params.append(query.scheduled_before)
        if query.after is not None:
            when, run_id = query.after
            where.append("(scheduled_time < ? OR (scheduled_time = ? AND id < ?))")
            params += [when, when, run_id]
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE {' AND '.join(where)} "
            "ORDER BY scheduled_time DESC, id DESC LIMIT ?",
            (*params, query.limit),
        )
        return [run_from_row(tuple(row)) for row in rows]

    def run_buckets(self, start: float, hours: int) -> RunBuckets:
        # Whole hours since `start`, rounded down: SQLite's CAST truncates (the values are
        # never negative here), PostgreSQL's rounds, so there FLOOR first.
        postgresql = self.dialect.name == POSTGRESQL
        hour_sql = (
            "CAST(FLOOR((scheduled_time - ?) / 3600) AS INTEGER)"
            if postgresql
            else "CAST((scheduled_time - ?) / 3600 AS INTEGER)"
        )
        rows = self._read(
            f"SELECT {hour_sql} AS hour, state, COUNT(*) "
            "FROM flow_runs WHERE scheduled_time >= ? AND scheduled_time < ? "
            "GROUP BY hour, state",
            (start, start, start + hours * 3600),
        )
        counts: dict[int, dict[str, int]] = {}
        for hour, state, count in rows:
            slot = int(hour)
            per_state = counts.setdefault(slot, {})
            per_state[state] = per_state.get(state, 0) + int(count)
        return RunBuckets(start, hours, counts)

    def runs_in_flight(self) -> dict[str, dict[str, int]]:
        rows = self._read(
            f"SELECT pool, worker, COUNT(*) FROM flow_runs WHERE state IN ({ACTIVE_SQL}) "
            "GROUP BY pool, worker"
        )
        counts: dict[str, dict[str, int]] = {}
        for pool, worker, count in rows:
            counts.setdefault(pool, {})[worker or "-"] = int(count)
        return counts

    def deployment_page(
        self, *, after: str | None, limit: int, search: str | None
    ) -> list[Resource]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if after is not None:
            where.append("key > ?")
            params.append(after)
        if search:
            where.append("LOWER(key) LIKE ?")
            escaped = search.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
            params.append(f"%{escaped}%")
        rows = self._read(
            "SELECT key, spec, content_hash, owner_repo, owner_file, source_commit "
            f"FROM deployments WHERE {' AND '.join(where)}"
            + (" ESCAPE '!'" if search else "")
            + " ORDER BY key LIMIT ?",
            (*params, limit),
        )
        return [
            Resource(
                Kind.DEPLOYMENT,
                key,
                spec,
                Owner(owner_repo, owner_file) if owner_repo is not None else None,
                commit,
                digest,
            )
            for key, spec, digest, owner_repo, owner_file, commit in rows
        ]

    def last_and_next_runs(self, deployment: str, now: float) -> tuple[FlowRun | None, ...]:
        last = self._read(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE deployment = ? AND scheduled_time <= ? "
            "ORDER BY scheduled_time DESC LIMIT 1",
            (deployment, now),
        )
        upcoming = self._read(
            f"SELECT {RUN_COLUMNS} FROM flow_runs WHERE deployment = ? AND scheduled_time > ? "
            "AND state IN ('SCHEDULED', 'LATE') ORDER BY scheduled_time LIMIT 1",
            (deployment, now),
        )
        return (
            run_from_row(tuple(last[0])) if last else None,
            run_from_row(tuple(upcoming[0])) if upcoming else None,
        )
