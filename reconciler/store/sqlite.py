"""The embedded SQLite store backend (the default).

WAL journal so readers never block the writer; `BEGIN IMMEDIATE` so two writers (two
`reconcile` processes) queue up instead of interleaving; a busy timeout so the second one
waits rather than fails.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from reconciler.errors import StaleLeaseError, StaleStateError, StoreUrlError
from reconciler.model import Kind, Owner, Resource, canonical_json
from reconciler.store.base import (
    AppliedPlanRecord,
    BlockRecord,
    Fence,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
)
from reconciler.store.migrations import LATEST_VERSION, MIGRATIONS
from reconciler.store.prefect_records import PrefectRecords
from reconciler.store.sqlite_runs import SqliteRuns, remove_future_scheduled_runs
from reconciler.store.web_records import WebRecords

BUSY_TIMEOUT_SECONDS = 60.0

_TABLE = {
    Kind.WORK_POOL: "work_pools",
    Kind.WORK_QUEUE: "work_queues",
    Kind.DEPLOYMENT: "deployments",
}
_OWNED = "spec, content_hash, owner_repo, owner_file, source_commit"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class SqliteStore(SqliteRuns, PrefectRecords, WebRecords):
    def __init__(self, path: str, *, url: str, readonly: bool = False) -> None:
        self.url = url
        self.path = path
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        if readonly and not os.path.exists(path):
            return  # reads as an empty store; nothing is created
        if not readonly:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreUrlError(
                    f"cannot create the store directory {directory}: {exc}"
                ) from None
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreUrlError(
                f"cannot open the store {path}: {exc}",
                "check the path in --store / RECONCILER_STORE; the file must be a reconciler "
                "SQLite store",
            ) from None
        except BaseException:
            self.close()
            raise

    # -- schema ---------------------------------------------------------------------------

    def _check_schema(self) -> None:
        conn = self._require()
        self._refuse_foreign_database()
        if not self.readonly:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        version = self._schema_version()
        if version > LATEST_VERSION:
            raise StoreUrlError(
                f"the store {self.path} has schema version {version}, newer than this "
                f"reconciler understands ({LATEST_VERSION})",
                "upgrade reconciler",
            )
        if version == LATEST_VERSION:
            return
        if self.readonly and version == 0:
            # No schema yet: the file is new, perhaps being created by another process's first
            # apply right now. Nothing was ever applied to it, so it reads as an empty store.
            self.close()
            return
        if self.readonly:
            raise StoreUrlError(
                f"the store {self.path} needs a schema upgrade (version {version} to "
                f"{LATEST_VERSION}), which a dry-run does not do",
                "run `reconcile` once without --dry-run to upgrade it",
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._schema_version()
            for migration in MIGRATIONS:
                if migration.version <= version:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _now()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _refuse_foreign_database(self) -> None:
        """A SQLite file with tables but no migration record belongs to something else: adding
        our tables to it would damage it."""
        tables = {
            row[0]
            for row in self._require().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if tables and "schema_migrations" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreUrlError(
                f"{self.path} is a SQLite database but not a reconciler store (it has the tables "
                f"{shown} and no schema_migrations)",
                "point --store / RECONCILER_STORE at a new file or an existing reconciler store",
            )

    def _schema_version(self) -> int:
        conn = self._require()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return 0
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    # -- reads ----------------------------------------------------------------------------

    def revision(self) -> int:
        if self._conn is None:
            return 0
        row = self._conn.execute("SELECT value FROM store_meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    def observe(self) -> ObservedState:
        if self._conn is None:
            return ObservedState(revision=0)
        conn = self._conn
        conn.execute("BEGIN")  # one read snapshot for everything below
        try:
            revision = self.revision()
            resources: dict[tuple[Kind, str], Resource] = {}
            for kind in Kind:
                for resource in self._rows(kind):
                    resources[resource.ident] = resource
            variables = self.variables()
            blocks = {(b.type_slug, b.name): b.value for b in self.blocks()}
        finally:
            conn.execute("COMMIT")
        return ObservedState(revision, resources, variables, blocks)

    def _rows(self, kind: Kind, key: str | None = None) -> list[Resource]:
        conn = self._require()
        key_expr = (
            "pool_name || '/' || name"
            if kind is Kind.WORK_QUEUE
            else ("name" if kind is Kind.WORK_POOL else "key")
        )
        sql = f"SELECT {key_expr}, {_OWNED} FROM {_TABLE[kind]}"
        params: tuple[str, ...] = ()
        if key is not None:
            sql += f" WHERE {key_expr} = ?"
            params = (key,)
        sql += f" ORDER BY {key_expr}"
        found = []
        for row_key, spec, digest, owner_repo, owner_file, commit in conn.execute(sql, params):
            owner = Owner(owner_repo, owner_file) if owner_repo is not None else None
            found.append(Resource(kind, row_key, spec, owner, commit, digest))
        return found

    def list_resources(self, kind: Kind) -> list[Resource]:
        if self._conn is None:
            return []
        return self._rows(kind)

    def get(self, kind: Kind, key: str) -> Resource | None:
        if self._conn is None:
            return None
        rows = self._rows(kind, key)
        return rows[0] if rows else None

    def variables(self) -> dict[str, Any]:
        if self._conn is None:
            return {}
        rows = self._conn.execute("SELECT name, value FROM variables ORDER BY name")
        return {name: json.loads(value) for name, value in rows}

    def blocks(self) -> list[BlockRecord]:
        if self._conn is None:
            return []
        rows = self._conn.execute(
            "SELECT type_slug, name, value FROM blocks ORDER BY type_slug, name"
        )
        return [BlockRecord(slug, name, json.loads(value)) for slug, name, value in rows]

    def repositories(self) -> list[RepositoryRecord]:
        if self._conn is None:
            return []
        rows = self._conn.execute(
            "SELECT repo, location, last_commit, last_applied_at FROM repositories ORDER BY repo"
        )
        return [RepositoryRecord(*row) for row in rows]

    def step_result(self, input_hash: str) -> Any | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT outputs FROM step_results WHERE input_hash = ?", (input_hash,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def repo_statuses(self) -> list[RepoStatusRecord]:
        if self._conn is None:
            return []
        rows = self._conn.execute("SELECT name, status, updated_at FROM repo_status ORDER BY name")
        return [RepoStatusRecord(name, json.loads(status), at) for name, status, at in rows]

    def history(self, limit: int = 20) -> list[AppliedPlanRecord]:
        if self._conn is None:
            return []
        rows = self._conn.execute(
            "SELECT id, applied_at, revision, sources, summary FROM applied_plans "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            AppliedPlanRecord(id_, at, rev, json.loads(sources), json.loads(summary))
            for id_, at, rev, sources, summary in rows
        ]

    def applied_plan(self, plan_id: int) -> AppliedPlanRecord | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT id, applied_at, revision, sources, summary, plan FROM applied_plans "
            "WHERE id = ?",
            (plan_id,),
        ).fetchone()
        if row is None:
            return None
        id_, at, rev, sources, summary, plan = row
        return AppliedPlanRecord(
            id_, at, rev, json.loads(sources), json.loads(summary), json.loads(plan)
        )

    # -- writes ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, expected_revision: int | None = None) -> Iterator[_SqliteTransaction]:
        with self._small_write() as conn:
            current = self.revision()
            if expected_revision is not None and current != expected_revision:
                raise StaleStateError(
                    f"the store changed while planning (revision {expected_revision} became "
                    f"{current})",
                    "plan again",
                )
            yield _SqliteTransaction(conn, current + 1)
            conn.execute(
                "UPDATE store_meta SET value = ? WHERE key = 'revision'", (str(current + 1),)
            )

    def put_repo_status(self, name: str, status: dict[str, Any]) -> None:
        with self._small_write() as conn:
            conn.execute(
                "INSERT INTO repo_status (name, status, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET status = excluded.status, "
                "updated_at = excluded.updated_at",
                (name, canonical_json(status), _now()),
            )

    def scheduling_policy(self) -> str | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT value FROM store_meta WHERE key = 'scheduling_policy'"
        ).fetchone()
        return str(row[0]) if row else None

    def set_scheduling_policy(self, policy_json: str) -> None:
        with self._small_write() as conn:
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('scheduling_policy', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (policy_json,),
            )

    def acquire_lease(
        self, name: str, holder: str, ttl_seconds: float, *, replacing: str | None = None
    ) -> str | None:
        now = time.time()
        with self._small_write() as conn:
            row = conn.execute(
                "SELECT holder, expires_at, token FROM repo_leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[1] > now and row[0] not in (holder, replacing):
                return str(row[0])
            renewal = row is not None and row[0] == holder and row[1] > now
            token = row[2] if renewal else (row[2] if row else 0) + 1
            conn.execute(
                "INSERT INTO repo_leases (name, holder, expires_at, token) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, token = excluded.token",
                (name, holder, now + ttl_seconds, token),
            )
            return None

    def lease_token(self, name: str, holder: str) -> int | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT token FROM repo_leases WHERE name = ? AND holder = ? AND expires_at > ?",
            (name, holder, time.time()),
        ).fetchone()
        return int(row[0]) if row else None

    def release_lease(self, name: str, holder: str) -> None:
        with self._small_write() as conn:
            # The row stays, so the next holder's token is greater than every earlier one.
            conn.execute(
                "UPDATE repo_leases SET expires_at = 0 WHERE name = ? AND holder = ?",
                (name, holder),
            )

    def wait_for_runs(self, pool: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """SQLite cannot tell other processes of a change: wait out the timeout (or until
        `stop`), and let the caller poll."""
        (stop or threading.Event()).wait(timeout)
        return False

    @contextmanager
    def _small_write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write under SQLite's write lock: status, leases and runs use it as is;
        `transaction()` adds the revision on top."""
        if self.readonly:
            raise RuntimeError("a read-only store cannot write")
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _sql(self, sql: str) -> str:
        return sql  # SQLite's placeholders are `?` already

    def _read_rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._conn is None:
            return []
        return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection, revision: int) -> None:
        self._conn = conn
        self.revision = revision
        self._now = _now()

    def put(self, resource: Resource) -> None:
        spec = resource.view()  # read only: a few columns of the stored row
        owner = resource.owner
        owned = (
            resource.spec_json,
            resource.hash,
            owner.repo if owner else None,
            owner.file if owner else None,
            resource.source_commit,
            self._now,
            self._now,
        )
        owned_columns = f"{_OWNED}, created_at, updated_at"
        owned_updates = ", ".join(
            f"{c} = excluded.{c}" for c in [*_OWNED.split(", "), "updated_at"]
        )
        if resource.kind is Kind.WORK_POOL:
            self._conn.execute(
                f"INSERT INTO work_pools (name, type, paused, concurrency_limit, {owned_columns}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                f"type = excluded.type, paused = excluded.paused, "
                f"concurrency_limit = excluded.concurrency_limit, {owned_updates}",
                (
                    resource.key,
                    spec["type"],
                    bool(spec.get("paused")),
                    spec.get("concurrency_limit"),
                    *owned,
                ),
            )
        elif resource.kind is Kind.WORK_QUEUE:
            self._conn.execute(
                "INSERT INTO work_queues (pool_name, name, priority, paused, concurrency_limit, "
                f"{owned_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (pool_name, name) DO UPDATE SET priority = excluded.priority, "
                "paused = excluded.paused, concurrency_limit = excluded.concurrency_limit, "
                f"{owned_updates}",
                (
                    spec["pool"],
                    spec["name"],
                    spec["priority"],
                    bool(spec.get("paused")),
                    spec.get("concurrency_limit"),
                    *owned,
                ),
            )
        else:
            self._conn.execute(
                "INSERT INTO deployments (key, flow_name, name, pool_name, queue_name, paused, "
                f"entrypoint, parameter_schema, pull_steps, {owned_columns}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET flow_name = excluded.flow_name, "
                "name = excluded.name, pool_name = excluded.pool_name, "
                "queue_name = excluded.queue_name, paused = excluded.paused, "
                "entrypoint = excluded.entrypoint, parameter_schema = excluded.parameter_schema, "
                f"pull_steps = excluded.pull_steps, {owned_updates}",
                (
                    resource.key,
                    spec["flow_name"],
                    spec["name"],
                    spec.get("work_pool_name"),
                    spec.get("work_queue_name"),
                    bool(spec.get("paused")),
                    spec["entrypoint"],
                    canonical_json(spec.get("parameter_openapi_schema", {})),
                    canonical_json(spec.get("pull_steps", [])),
                    *owned,
                ),
            )

    def delete(self, kind: Kind, key: str) -> None:
        if kind is Kind.WORK_QUEUE:
            pool, name = key.split("/", 1)
            self._conn.execute(
                "DELETE FROM work_queues WHERE pool_name = ? AND name = ?", (pool, name)
            )
        elif kind is Kind.WORK_POOL:
            self._conn.execute("DELETE FROM work_pools WHERE name = ?", (key,))
        else:
            self._conn.execute("DELETE FROM deployments WHERE key = ?", (key,))

    def remove_scheduled_runs(self, deployment: str, keep_schedules: Iterable[str]) -> int:
        return remove_future_scheduled_runs(self._conn, deployment, keep_schedules)

    def check_fence(self, fence: Fence) -> None:
        row = self._conn.execute(
            "SELECT holder, token, expires_at FROM repo_leases WHERE name = ?", (fence.lease,)
        ).fetchone()
        if row is None or (row[0], row[1]) != (fence.holder, fence.token) or row[2] <= time.time():
            raise StaleLeaseError(
                f"this process no longer holds the lease {fence.lease!r} (token {fence.token}); "
                "another took over: nothing was written",
                "nothing to do: the process that holds the lease now does the work",
            )

    def record_repository(self, repo: str, location: str, commit: str | None) -> None:
        self._conn.execute(
            "INSERT INTO repositories (repo, location, last_commit, last_applied_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (repo) DO UPDATE SET location = excluded.location, "
            "last_commit = excluded.last_commit, last_applied_at = excluded.last_applied_at",
            (repo, location, commit, self._now),
        )

    def record_plan(self, plan_json: dict[str, Any]) -> int:
        sources = [
            {"repo": s["repo"], "commit": s["commit"], "ref": s["ref"]}
            for s in plan_json.get("sources", [])
        ]
        cursor = self._conn.execute(
            "INSERT INTO applied_plans (applied_at, revision, sources, summary, plan) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                self._now,
                self.revision,
                canonical_json(sources),
                canonical_json(plan_json.get("summary", {})),
                canonical_json(plan_json),
            ),
        )
        return int(cursor.lastrowid or 0)

    def record_step_result(self, input_hash: str, step_name: str, outputs: Any) -> None:
        self._conn.execute(
            "INSERT INTO step_results (input_hash, step_name, outputs, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (input_hash) DO UPDATE SET "
            "outputs = excluded.outputs, created_at = excluded.created_at",
            (input_hash, step_name, canonical_json(outputs), self._now),
        )

    def set_variable(self, name: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO variables (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (name, canonical_json(value), self._now),
        )

    def delete_variable(self, name: str) -> bool:
        cursor = self._conn.execute("DELETE FROM variables WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def set_block(self, type_slug: str, name: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO blocks (type_slug, name, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (type_slug, name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (type_slug, name, canonical_json(value), self._now),
        )

    def delete_block(self, type_slug: str, name: str) -> bool:
        cursor = self._conn.execute(
            "DELETE FROM blocks WHERE type_slug = ? AND name = ?", (type_slug, name)
        )
        return cursor.rowcount > 0
