"""The store over SQL, written once for SQLite and PostgreSQL (store/base.py is the contract).

`SqlStore` holds every query of desired resources and history, variables, blocks and step
results, status and leases, and the schema's migrations; store/sql_runs.py adds runs, logs
and workers, and store/prefect_records.py the Prefect records. Queries are in the common SQL
of store/sql.py (`?` placeholders, ON CONFLICT upserts, RETURNING, row-lock clauses that SQLite
drops). A backend (store/sqlite.py, store/postgres.py) supplies only what really differs:

- how it connects, and what a write and a read snapshot are (`_write()`, `_snapshot()`):
  SQLite's `BEGIN IMMEDIATE` (one writer at a time for the whole file), PostgreSQL's
  transactions with row locks;
- `_lock()`: an advisory lock where row locks cannot say it (PostgreSQL; nothing on SQLite,
  whose writer lock already covers it);
- `_notify()`: telling listening workers that runs of a pool may be claimable (PostgreSQL's
  NOTIFY; nothing on SQLite) and `wait_for_runs()`;
- the catalogue (`_tables()`) and the lock migrations run under (`_migration_write()`).

**Revision.** A revisioned `transaction()` first reads the revision row `FOR UPDATE`: on
PostgreSQL writers queue up there, one at a time, as SQLite's `BEGIN IMMEDIATE` makes them;
the second sees the revision the first committed, so a stale `expected_revision` fails on
entry with nothing written.

**Leases.** One `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (free, expired, ours, or the dead
holder's): of two racing callers exactly one gets the row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from reconciler.core.errors import StaleLeaseError, StaleStateError, StoreUrlError
from reconciler.model.observed import (
    AppliedPlanRecord,
    BlockRecord,
    Fence,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
)
from reconciler.model.resources import Kind, Owner, Resource, canonical_json
from reconciler.store.migrations import LATEST_VERSION, MIGRATIONS
from reconciler.store.run_rows import WAITING_SQL, now_iso
from reconciler.store.sql import Conn, Dialect

_TABLE = {
    Kind.WORK_POOL: "work_pools",
    Kind.WORK_QUEUE: "work_queues",
    Kind.DEPLOYMENT: "deployments",
    Kind.AUTOMATION: "automations",
}
_KEY = {
    Kind.WORK_POOL: "name",
    Kind.WORK_QUEUE: "pool_name || '/' || name",
    Kind.DEPLOYMENT: "key",
    Kind.AUTOMATION: "name",
}
_OWNED = "spec, content_hash, owner_repo, owner_file, source_commit"
_OWNED_COLUMNS = f"{_OWNED}, created_at, updated_at"
_OWNED_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in [*_OWNED.split(", "), "updated_at"])
_OWNED_MARKS = ", ".join("?" for _ in _OWNED_COLUMNS.split(", "))

# Advisory lock namespaces (the first key of PostgreSQL's pg_advisory_xact_lock(int, int)).
LOCK_MIGRATIONS = 0x5EC0
LOCK_DEPLOYMENT = 0x5EC1
LOCK_RUN_LOGS = 0x5EC2


class SqlStoreBase:
    """What every part of the SQL store relies on; the backend provides it."""

    dialect: ClassVar[Dialect]
    readonly: bool
    shown: str
    """The store as messages show it (a file path, or a URL without credentials)."""

    def _is_open(self) -> bool:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Conn]:
        """One atomic write of its own: status, leases, runs and records use it as is;
        `transaction()` adds the revision on top."""
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read outside any write; [] when nothing is stored (a read-only open of
        a store that does not exist)."""
        raise NotImplementedError

    def _lock(self, conn: Conn, namespace: int, key: str) -> None:
        """Inside a write: wait for other writers holding (`namespace`, `key`) to end."""

    def _notify(self, conn: Conn, pools: Iterable[str]) -> None:
        """Inside a write: at commit, tell listeners that runs of `pools` may be claimable."""


class SqlStore(SqlStoreBase):
    """Resources and history, variables, blocks and step results, status and leases."""

    # -- schema ---------------------------------------------------------------------------

    def _tables(self) -> set[str]:
        """The tables of the store's database (its schema)."""
        raise NotImplementedError

    def _migration_write(self) -> AbstractContextManager[Conn]:
        """A write that one process at a time runs migrations in."""
        raise NotImplementedError

    _DATABASE: ClassVar[str] = ""
    """'SQLite' or 'PostgreSQL', as messages name it."""
    _PLACE: ClassVar[str] = ""
    """Where a new store goes: 'file' or 'database'."""

    def _check_schema(self) -> None:
        """Refuse what is not ours or is newer; migrate to the latest version (not when
        read-only: a read-only open of a store without a schema reads as empty)."""
        tables = self._tables()
        self._refuse_foreign_database(tables)
        version = self._schema_version(tables)
        self._refuse_newer(version)
        if version == LATEST_VERSION:
            return
        if self.readonly and version == 0:
            # No schema yet: the store is new, perhaps being created by another process's
            # first apply right now. Nothing was ever applied to it, so it reads as empty.
            self.close()
            return
        if self.readonly:
            raise StoreUrlError(
                f"the store {self.shown} needs a schema upgrade (version {version} to "
                f"{LATEST_VERSION}), which a dry-run does not do",
                "run `reconcile` once without --dry-run to upgrade it",
            )
        with self._migration_write() as conn:
            tables = self._tables()  # looked at again, under the lock
            self._refuse_foreign_database(tables)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            version = self._schema_version(tables | {"schema_migrations"})
            self._refuse_newer(version)
            for migration in MIGRATIONS:
                if migration.version <= version:
                    continue
                for statement in migration.statements_for(self.dialect.name):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_iso()),
                )

    def _refuse_foreign_database(self, tables: set[str]) -> None:
        """Tables but no migration record: the database belongs to something else, and
        adding our tables to it would damage it."""
        if tables and "schema_migrations" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreUrlError(
                f"{self.shown} is a {self._DATABASE} database but not a reconciler store (it "
                f"has the tables {shown} and no schema_migrations)",
                f"point --store / RECONCILER_STORE at a new {self._PLACE} or an existing "
                "reconciler store",
            )

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreUrlError(
                f"the store {self.shown} has schema version {version}, newer than this "
                f"reconciler understands ({LATEST_VERSION})",
                "upgrade reconciler",
            )

    def _schema_version(self, tables: set[str]) -> int:
        if "schema_migrations" not in tables:
            return 0
        rows = self._read("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0) if rows else 0

    def close(self) -> None:
        raise NotImplementedError

    # -- reads ----------------------------------------------------------------------------

    def _snapshot(self) -> AbstractContextManager[None]:
        """The reads inside see one snapshot of the store."""
        raise NotImplementedError

    def revision(self) -> int:
        rows = self._read("SELECT value FROM store_meta WHERE key = 'revision'")
        return int(rows[0][0]) if rows else 0

    def observe(self) -> ObservedState:
        if not self._is_open():
            return ObservedState(revision=0)
        with self._snapshot():
            revision = self.revision()
            resources: dict[tuple[Kind, str], Resource] = {}
            for kind in Kind:
                for resource in self._rows(kind):
                    resources[resource.ident] = resource
            variables = self.variables()
            blocks = {(b.type_slug, b.name): b.value for b in self.blocks()}
        return ObservedState(revision, resources, variables, blocks)

    def _rows(self, kind: Kind, key: str | None = None) -> list[Resource]:
        key_expr = _KEY[kind]
        sql = f"SELECT {key_expr}, {_OWNED} FROM {_TABLE[kind]}"
        params: tuple[str, ...] = ()
        if key is not None:
            sql += f" WHERE {key_expr} = ?"
            params = (key,)
        sql += f' ORDER BY {key_expr} COLLATE "C"'  # code point order on both
        found = []
        for row_key, spec, digest, owner_repo, owner_file, commit in self._read(sql, params):
            owner = Owner(owner_repo, owner_file) if owner_repo is not None else None
            found.append(Resource(kind, row_key, spec, owner, commit, digest))
        return found

    def list_resources(self, kind: Kind) -> list[Resource]:
        return self._rows(kind)

    def get(self, kind: Kind, key: str) -> Resource | None:
        rows = self._rows(kind, key)
        return rows[0] if rows else None

    def variables(self) -> dict[str, Any]:
        rows = self._read('SELECT name, value FROM variables ORDER BY name COLLATE "C"')
        return {name: json.loads(value) for name, value in rows}

    def blocks(self) -> list[BlockRecord]:
        rows = self._read(
            'SELECT type_slug, name, value FROM blocks ORDER BY type_slug COLLATE "C", '
            'name COLLATE "C"'
        )
        return [BlockRecord(slug, name, json.loads(value)) for slug, name, value in rows]

    def repositories(self) -> list[RepositoryRecord]:
        rows = self._read(
            "SELECT repo, location, last_commit, last_applied_at FROM repositories "
            'ORDER BY repo COLLATE "C"'
        )
        return [RepositoryRecord(*row) for row in rows]

    def step_result(self, input_hash: str) -> Any | None:
        rows = self._read("SELECT outputs FROM step_results WHERE input_hash = ?", (input_hash,))
        return json.loads(rows[0][0]) if rows else None

    def repo_statuses(self) -> list[RepoStatusRecord]:
        rows = self._read(
            'SELECT name, status, updated_at FROM repo_status ORDER BY name COLLATE "C"'
        )
        return [RepoStatusRecord(name, json.loads(status), at) for name, status, at in rows]

    def history(self, limit: int = 20) -> list[AppliedPlanRecord]:
        rows = self._read(
            "SELECT id, applied_at, revision, sources, summary FROM applied_plans "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            AppliedPlanRecord(int(id_), at, rev, json.loads(sources), json.loads(summary))
            for id_, at, rev, sources, summary in rows
        ]

    def applied_plan(self, plan_id: int) -> AppliedPlanRecord | None:
        rows = self._read(
            "SELECT id, applied_at, revision, sources, summary, plan FROM applied_plans "
            "WHERE id = ?",
            (plan_id,),
        )
        if not rows:
            return None
        id_, at, rev, sources, summary, plan = rows[0]
        return AppliedPlanRecord(
            int(id_), at, rev, json.loads(sources), json.loads(summary), json.loads(plan)
        )

    # -- writes ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, expected_revision: int | None = None) -> Iterator[SqlTransaction]:
        with self._write() as conn:
            # Every revisioned writer locks this row first: they commit one after another,
            # and each reads the revision its predecessor committed.
            row = conn.one("SELECT value FROM store_meta WHERE key = 'revision' FOR UPDATE")
            assert row is not None, "store_meta has no revision row"
            current = int(row[0])
            if expected_revision is not None and current != expected_revision:
                raise StaleStateError(
                    f"the store changed while planning (revision {expected_revision} became "
                    f"{current})",
                    "plan again",
                )
            tx = SqlTransaction(conn, current + 1)
            yield tx
            conn.execute(
                "UPDATE store_meta SET value = ? WHERE key = 'revision'", (str(current + 1),)
            )
            self._notify(conn, tx.pools)

    def put_repo_status(self, name: str, status: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO repo_status (name, status, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET status = excluded.status, "
                "updated_at = excluded.updated_at",
                (name, canonical_json(status), now_iso()),
            )

    def scheduling_policy(self) -> str | None:
        rows = self._read("SELECT value FROM store_meta WHERE key = 'scheduling_policy'")
        return str(rows[0][0]) if rows else None

    def set_scheduling_policy(self, policy_json: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('scheduling_policy', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (policy_json,),
            )

    def acquire_lease(
        self, name: str, holder: str, ttl_seconds: float, *, replacing: str | None = None
    ) -> str | None:
        now = time.time()
        with self._write() as conn:
            # Taken when free, expired, ours, or the dead holder's. When the condition fails,
            # PostgreSQL's ON CONFLICT has locked the row all the same (SQLite's writer lock
            # covers everything): the holder read next is current. The fencing token grows
            # unless this is a renewal of a lease still held.
            taken = conn.one(
                "INSERT INTO repo_leases (name, holder, expires_at, token) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, "
                "token = CASE WHEN repo_leases.holder = excluded.holder "
                "AND repo_leases.expires_at > ? THEN repo_leases.token "
                "ELSE repo_leases.token + 1 END "
                "WHERE repo_leases.expires_at <= ? OR repo_leases.holder = ? "
                "OR repo_leases.holder = ? "
                "RETURNING holder",
                (name, holder, now + ttl_seconds, now, now, holder, replacing),
            )
            if taken is not None:
                return None
            row = conn.one("SELECT holder FROM repo_leases WHERE name = ?", (name,))
            assert row is not None, "a conflicting lease row is locked and cannot go"
            return str(row[0])

    def lease_token(self, name: str, holder: str) -> int | None:
        rows = self._read(
            "SELECT token FROM repo_leases WHERE name = ? AND holder = ? AND expires_at > ?",
            (name, holder, time.time()),
        )
        return int(rows[0][0]) if rows else None

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            # The row stays, so the next holder's token is greater than every earlier one.
            conn.execute(
                "UPDATE repo_leases SET expires_at = 0 WHERE name = ? AND holder = ?",
                (name, holder),
            )


class SqlTransaction:
    """The writes of one revisioned transaction (store/base.py's WriteTransaction)."""

    def __init__(self, conn: Conn, revision: int) -> None:
        self._conn = conn
        self.revision = revision
        self._now = now_iso()
        self.pools: set[str] = set()
        """Pools whose runs may have become claimable: notified at commit."""

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
        if resource.kind is Kind.WORK_POOL:
            self._conn.execute(
                f"INSERT INTO work_pools (name, type, paused, concurrency_limit, {_OWNED_COLUMNS}) "
                f"VALUES (?, ?, ?, ?, {_OWNED_MARKS}) ON CONFLICT (name) DO UPDATE SET "
                "type = excluded.type, paused = excluded.paused, "
                f"concurrency_limit = excluded.concurrency_limit, {_OWNED_UPDATES}",
                (
                    resource.key,
                    spec["type"],
                    bool(spec.get("paused")),
                    spec.get("concurrency_limit"),
                    *owned,
                ),
            )
            self.pools.add(resource.key)
        elif resource.kind is Kind.WORK_QUEUE:
            self._conn.execute(
                "INSERT INTO work_queues (pool_name, name, priority, paused, concurrency_limit, "
                f"{_OWNED_COLUMNS}) VALUES (?, ?, ?, ?, ?, {_OWNED_MARKS}) "
                "ON CONFLICT (pool_name, name) DO UPDATE SET priority = excluded.priority, "
                "paused = excluded.paused, concurrency_limit = excluded.concurrency_limit, "
                f"{_OWNED_UPDATES}",
                (
                    spec["pool"],
                    spec["name"],
                    spec["priority"],
                    bool(spec.get("paused")),
                    spec.get("concurrency_limit"),
                    *owned,
                ),
            )
            self.pools.add(spec["pool"])
        elif resource.kind is Kind.AUTOMATION:
            self._conn.execute(
                f"INSERT INTO automations (name, {_OWNED_COLUMNS}) VALUES (?, {_OWNED_MARKS}) "
                f"ON CONFLICT (name) DO UPDATE SET {_OWNED_UPDATES}",
                (resource.key, *owned),
            )
        else:
            self._conn.execute(
                "INSERT INTO deployments (key, flow_name, name, pool_name, queue_name, paused, "
                f"entrypoint, parameter_schema, pull_steps, {_OWNED_COLUMNS}) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {_OWNED_MARKS}) "
                "ON CONFLICT (key) DO UPDATE SET flow_name = excluded.flow_name, "
                "name = excluded.name, pool_name = excluded.pool_name, "
                "queue_name = excluded.queue_name, paused = excluded.paused, "
                "entrypoint = excluded.entrypoint, parameter_schema = excluded.parameter_schema, "
                f"pull_steps = excluded.pull_steps, {_OWNED_UPDATES}",
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
            if spec.get("work_pool_name"):  # its concurrency limit may have been raised
                self.pools.add(str(spec["work_pool_name"]))

    def delete(self, kind: Kind, key: str) -> None:
        if kind is Kind.WORK_QUEUE:
            pool, name = key.split("/", 1)
            self._conn.execute(
                "DELETE FROM work_queues WHERE pool_name = ? AND name = ?", (pool, name)
            )
        elif kind is Kind.WORK_POOL:
            self._conn.execute("DELETE FROM work_pools WHERE name = ?", (key,))
        elif kind is Kind.AUTOMATION:
            self._conn.execute("DELETE FROM automations WHERE name = ?", (key,))
        else:
            self._conn.execute("DELETE FROM deployments WHERE key = ?", (key,))

    def remove_scheduled_runs(self, deployment: str, keep_schedules: Iterable[str]) -> int:
        """Delete the deployment's auto-scheduled runs that have not started, except those of
        `keep_schedules`. Manual runs are never touched."""
        kept, params = self._conn.dialect.in_list("schedule_id", list(keep_schedules), negate=True)
        cursor = self._conn.execute(
            "DELETE FROM flow_runs WHERE deployment = ? AND schedule_id IS NOT NULL "
            f"AND state IN ({WAITING_SQL}) AND {kept}",
            (deployment, *params),
        )
        return cursor.rowcount

    def check_fence(self, fence: Fence) -> None:
        # FOR SHARE: on PostgreSQL, a takeover (which updates the row) waits for this
        # transaction to end.
        row = self._conn.one(
            "SELECT holder, token, expires_at FROM repo_leases WHERE name = ? FOR SHARE",
            (fence.lease,),
        )
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
        row = self._conn.one(
            "INSERT INTO applied_plans (applied_at, revision, sources, summary, plan) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (
                self._now,
                self.revision,
                canonical_json(sources),
                canonical_json(plan_json.get("summary", {})),
                canonical_json(plan_json),
            ),
        )
        assert row is not None
        return int(row[0])

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
