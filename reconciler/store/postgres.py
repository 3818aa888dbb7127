"""The PostgreSQL store backend: `postgresql://user:password@host:port/database` (or
`postgres://`), for several daemons and workers on many machines sharing one store.

The same tables and semantics as SQLite (store/base.py is the contract), through psycopg 3 on
one connection per store, in autocommit mode: every read is its own statement, and every write
is an explicit transaction.

- **Revision.** A revisioned `transaction()` starts by locking the revision row of
  `store_meta` (`SELECT ... FOR UPDATE`): writers queue up there, one at a time, as SQLite's
  `BEGIN IMMEDIATE` makes them; the second sees the revision the first committed, so a stale
  `expected_revision` fails on entry with nothing written.
- **Snapshots.** `observe()` reads everything in one REPEATABLE READ, READ ONLY transaction.
- **Leases.** One `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (free, expired, ours, or the
  dead holder's): of two racing callers exactly one gets the row.
- **Runs.** See store/postgres_runs.py (claims with `FOR UPDATE SKIP LOCKED`).
- **Wake-ups.** Runs created or freed, and pools, queues and deployments written, send
  `NOTIFY reconciler_runs, '<pool>'` at commit; `wait_for_runs()` LISTENs on a connection of
  its own, so an idle worker hears of a new run at once rather than at its next poll.
- **Schema.** The migrations of store/migrations.py, PostgreSQL's DDL, run once each under an
  advisory lock (two processes opening a new database do not both migrate), recorded in
  `schema_migrations`; a newer schema, or a database with tables but no `schema_migrations`
  (someone else's), is refused. A read-only open creates and migrates nothing, and its session
  is read-only (`default_transaction_read_only`).
- **Secrets.** The password of the URL never appears in an error: URLs are shown without
  credentials and the driver's messages are masked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo

from reconciler.errors import StaleLeaseError, StaleStateError, StoreUrlError
from reconciler.model import Kind, Owner, Resource, canonical_json
from reconciler.runs import WAITING_STATES, RunState
from reconciler.store.base import (
    AppliedPlanRecord,
    BlockRecord,
    Fence,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
)
from reconciler.store.migrations import LATEST_VERSION, MIGRATIONS, POSTGRESQL
from reconciler.store.postgres_runs import (
    CHANNEL,
    LOCK_MIGRATIONS,
    LOCK_RUN_LOGS,
    Connection,
    PostgresRuns,
    notify_pools,
    remove_future_scheduled_runs,
)
from reconciler.store.prefect_records import PrefectRecords, SqlConnection
from reconciler.store.web_records import WebRecords
from reconciler.url_credentials import strip_credentials

CONNECT_TIMEOUT_SECONDS = 10
_IN_TRANSACTION = psycopg.pq.TransactionStatus.INTRANS
_TRANSACTION_FAILED = psycopg.pq.TransactionStatus.INERROR
LISTEN_SLICE_SECONDS = 0.2
"""How often a wait for runs looks at its `stop` event."""

_TABLE = {
    Kind.WORK_POOL: "work_pools",
    Kind.WORK_QUEUE: "work_queues",
    Kind.DEPLOYMENT: "deployments",
}
_KEY = {
    Kind.WORK_POOL: "name",
    Kind.WORK_QUEUE: "pool_name || '/' || name",
    Kind.DEPLOYMENT: "key",
}
_OWNED = "spec, content_hash, owner_repo, owner_file, source_commit"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class PostgresStore(PostgresRuns, PrefectRecords, WebRecords):
    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.shown_url = shown_url(url)
        self.url = self.shown_url  # logged and shown by callers: never the password
        self.readonly = readonly
        self._secrets = _url_secrets(url)
        self._conninfo = self._make_conninfo(url)
        self._conn: Connection | None = None
        self._listener: Connection | None = None
        self._listen_lock = threading.Lock()
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise StoreUrlError(
                f"cannot connect to the store {self.shown_url}: {self._mask(exc)}",
                "check the URL in --store / RECONCILER_STORE, that the server runs, and that "
                "the database exists (reconciler creates its tables, not the database)",
            ) from None
        try:
            self._check_schema()
        except psycopg.Error as exc:
            self.close()
            raise StoreUrlError(
                f"cannot open the store {self.shown_url}: {self._mask(exc)}",
                "check the URL in --store / RECONCILER_STORE; the user needs to create tables "
                "in the database's schema",
            ) from None
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------

    def _make_conninfo(self, url: str) -> str:
        try:
            params = pg_conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreUrlError(
                f"invalid store URL {self.shown_url}: {self._mask(exc)}",
                "use postgresql://user:password@host:port/database",
            ) from None
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        params.setdefault("application_name", "reconciler")
        if self.readonly:
            options = str(params.get("options") or "")
            params["options"] = f"{options} -c default_transaction_read_only=on".strip()
        return pg_conninfo.make_conninfo("", **params)

    def _connect(self) -> Connection:
        return psycopg.connect(self._conninfo, autocommit=True)

    def _mask(self, error: BaseException | str) -> str:
        """The driver's message without the URL's password (in any spelling of it)."""
        text = str(error).strip()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _require(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        if self._conn.closed or self._conn.broken:  # the server went away: connect again
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
        return self._conn

    # -- schema ---------------------------------------------------------------------------

    def _check_schema(self) -> None:
        conn = self._require()
        self._refuse_foreign_database()
        version = self._schema_version()
        self._refuse_newer(version)
        if version == LATEST_VERSION:
            return
        if self.readonly and version == 0:
            # No schema yet: nothing was ever applied here, so it reads as an empty store.
            self.close()
            return
        if self.readonly:
            raise StoreUrlError(
                f"the store {self.shown_url} needs a schema upgrade (version {version} to "
                f"{LATEST_VERSION}), which a dry-run does not do",
                "run `reconcile` once without --dry-run to upgrade it",
            )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_MIGRATIONS,))
            self._refuse_foreign_database()  # looked at again, under the lock
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            version = self._schema_version()
            self._refuse_newer(version)
            for migration in MIGRATIONS:
                if migration.version <= version:
                    continue
                for statement in migration.statements_for(POSTGRESQL):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, _now()),
                )

    def _tables(self) -> set[str]:
        rows = (
            self._require()
            .execute(
                "SELECT c.relname FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            )
            .fetchall()
        )
        return {str(row[0]) for row in rows}

    def _refuse_foreign_database(self) -> None:
        """Tables but no migration record: the database belongs to something else, and adding
        our tables to it would damage it."""
        tables = self._tables()
        if tables and "schema_migrations" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreUrlError(
                f"{self.shown_url} is a PostgreSQL database but not a reconciler store (it has "
                f"the tables {shown} and no schema_migrations)",
                "point --store / RECONCILER_STORE at a new database or an existing reconciler "
                "store",
            )

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreUrlError(
                f"the store {self.shown_url} has schema version {version}, newer than this "
                f"reconciler understands ({LATEST_VERSION})",
                "upgrade reconciler",
            )

    def _schema_version(self) -> int:
        conn = self._require()
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return 0
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0) if row else 0

    # -- reads ----------------------------------------------------------------------------

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._require()
        try:
            return conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            # A cut connection is not always marked broken at once (the server's goodbye can
            # arrive while a query is being sent): drop it, so the next call connects again.
            status = conn.info.transaction_status
            if status not in (_IN_TRANSACTION, _TRANSACTION_FAILED):  # not a caller's
                conn.close()
            raise

    def revision(self) -> int:
        if self._conn is None:
            return 0
        rows = self._all("SELECT value FROM store_meta WHERE key = 'revision'")
        return int(rows[0][0])

    def observe(self) -> ObservedState:
        if self._conn is None:
            return ObservedState(revision=0)
        conn = self._require()
        inside_a_write = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            if not inside_a_write:  # one snapshot for everything below
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
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
            sql += f" WHERE {key_expr} = %s"
            params = (key,)
        sql += f' ORDER BY {key_expr} COLLATE "C"'  # code point order, as SQLite sorts
        found = []
        for row_key, spec, digest, owner_repo, owner_file, commit in self._all(sql, params):
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
        rows = self._all('SELECT name, value FROM variables ORDER BY name COLLATE "C"')
        return {name: json.loads(value) for name, value in rows}

    def blocks(self) -> list[BlockRecord]:
        if self._conn is None:
            return []
        rows = self._all(
            'SELECT type_slug, name, value FROM blocks ORDER BY type_slug COLLATE "C", '
            'name COLLATE "C"'
        )
        return [BlockRecord(slug, name, json.loads(value)) for slug, name, value in rows]

    def repositories(self) -> list[RepositoryRecord]:
        if self._conn is None:
            return []
        rows = self._all(
            "SELECT repo, location, last_commit, last_applied_at FROM repositories "
            'ORDER BY repo COLLATE "C"'
        )
        return [RepositoryRecord(*row) for row in rows]

    def step_result(self, input_hash: str) -> Any | None:
        if self._conn is None:
            return None
        rows = self._all("SELECT outputs FROM step_results WHERE input_hash = %s", (input_hash,))
        return json.loads(rows[0][0]) if rows else None

    def repo_statuses(self) -> list[RepoStatusRecord]:
        if self._conn is None:
            return []
        rows = self._all(
            'SELECT name, status, updated_at FROM repo_status ORDER BY name COLLATE "C"'
        )
        return [RepoStatusRecord(name, json.loads(status), at) for name, status, at in rows]

    def history(self, limit: int = 20) -> list[AppliedPlanRecord]:
        if self._conn is None:
            return []
        rows = self._all(
            "SELECT id, applied_at, revision, sources, summary FROM applied_plans "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [
            AppliedPlanRecord(id_, at, rev, json.loads(sources), json.loads(summary))
            for id_, at, rev, sources, summary in rows
        ]

    def applied_plan(self, plan_id: int) -> AppliedPlanRecord | None:
        if self._conn is None:
            return None
        rows = self._all(
            "SELECT id, applied_at, revision, sources, summary, plan FROM applied_plans "
            "WHERE id = %s",
            (plan_id,),
        )
        if not rows:
            return None
        id_, at, rev, sources, summary, plan = rows[0]
        return AppliedPlanRecord(
            id_, at, rev, json.loads(sources), json.loads(summary), json.loads(plan)
        )

    # -- writes ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, expected_revision: int | None = None) -> Iterator[_PostgresTransaction]:
        if self.readonly:
            raise RuntimeError("a read-only store cannot write")
        conn = self._require()
        with conn.transaction():
            # Every revisioned writer locks this row first: they commit one after another,
            # and each reads the revision its predecessor committed.
            row = conn.execute(
                "SELECT value FROM store_meta WHERE key = 'revision' FOR UPDATE"
            ).fetchone()
            assert row is not None, "store_meta has no revision row"
            current = int(row[0])
            if expected_revision is not None and current != expected_revision:
                raise StaleStateError(
                    f"the store changed while planning (revision {expected_revision} became "
                    f"{current})",
                    "plan again",
                )
            tx = _PostgresTransaction(conn, current + 1)
            yield tx
            conn.execute(
                "UPDATE store_meta SET value = %s WHERE key = 'revision'", (str(current + 1),)
            )
            notify_pools(conn, tx.pools)

    @contextmanager
    def _small_write(self) -> Iterator[Connection]:
        """A write outside the revisioned transactions (status, leases, runs)."""
        if self.readonly:
            raise RuntimeError("a read-only store cannot write")
        conn = self._require()
        with conn.transaction():
            yield conn

    def put_repo_status(self, name: str, status: dict[str, Any]) -> None:
        with self._small_write() as conn:
            conn.execute(
                "INSERT INTO repo_status (name, status, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET status = excluded.status, "
                "updated_at = excluded.updated_at",
                (name, canonical_json(status), _now()),
            )

    def scheduling_policy(self) -> str | None:
        if self._conn is None:
            return None
        rows = self._all("SELECT value FROM store_meta WHERE key = 'scheduling_policy'")
        return str(rows[0][0]) if rows else None

    def set_scheduling_policy(self, policy_json: str) -> None:
        with self._small_write() as conn:
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('scheduling_policy', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (policy_json,),
            )

    def acquire_lease(
        self, name: str, holder: str, ttl_seconds: float, *, replacing: str | None = None
    ) -> str | None:
        now = time.time()
        with self._small_write() as conn:
            # Taken when free, expired, ours, or the dead holder's. When the condition fails,
            # ON CONFLICT has locked the row all the same: the holder read next is current.
            # The fencing token grows unless this is a renewal of a lease still held.
            taken = conn.execute(
                "INSERT INTO repo_leases (name, holder, expires_at, token) "
                "VALUES (%s, %s, %s, 1) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, "
                "token = CASE WHEN repo_leases.holder = excluded.holder "
                "AND repo_leases.expires_at > %s THEN repo_leases.token "
                "ELSE repo_leases.token + 1 END "
                "WHERE repo_leases.expires_at <= %s OR repo_leases.holder = %s "
                "OR repo_leases.holder = %s "
                "RETURNING holder",
                (name, holder, now + ttl_seconds, now, now, holder, replacing),
            ).fetchone()
            if taken is not None:
                return None
            row = conn.execute("SELECT holder FROM repo_leases WHERE name = %s", (name,)).fetchone()
            assert row is not None, "a conflicting lease row is locked and cannot go"
            return str(row[0])

    def lease_token(self, name: str, holder: str) -> int | None:
        if self._conn is None:
            return None
        rows = self._all(
            "SELECT token FROM repo_leases WHERE name = %s AND holder = %s AND expires_at > %s",
            (name, holder, time.time()),
        )
        return int(rows[0][0]) if rows else None

    def release_lease(self, name: str, holder: str) -> None:
        with self._small_write() as conn:
            # The row stays, so the next holder's token is greater than every earlier one.
            conn.execute(
                "UPDATE repo_leases SET expires_at = 0 WHERE name = %s AND holder = %s",
                (name, holder),
            )

    # -- wake-ups ---------------------------------------------------------------------------

    def wait_for_runs(self, pool: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """LISTEN on a connection of its own and wait up to `timeout` for a notification
        about `pool`. The first call starts listening and returns True at once: what was
        sent before cannot be heard, so the caller should look again."""
        if timeout <= 0 or (stop is not None and stop.is_set()):
            return False
        with self._listen_lock:
            if self._listener is None or self._listener.closed:
                try:
                    self._listener = self._connect()
                    self._listener.execute(f"LISTEN {CHANNEL}")
                except psycopg.Error:
                    self._drop_listener()
                    _sleep(timeout, stop)  # polling it is, this time
                    return False
                return True
            listener = self._listener
            deadline = time.monotonic() + timeout
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or (stop is not None and stop.is_set()):
                        return False
                    slice_ = min(remaining, LISTEN_SLICE_SECONDS) if stop else remaining
                    notes = listener.notifies(timeout=slice_)
                    try:  # closed before the next call: it holds the connection's lock
                        heard = any(note.payload == pool for note in notes)
                    finally:
                        notes.close()
                    if heard:
                        # Later notices of the same burst would wake the caller for nothing.
                        for _ in listener.notifies(timeout=0):
                            pass
                        return True
            except psycopg.Error:
                self._drop_listener()
                _sleep(deadline - time.monotonic(), stop)
                return False

    # -- what reconciler/store/prefect_records.py needs ------------------------------------

    _FOR_UPDATE = " FOR UPDATE"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")  # the shared SQL has no other `?` (nor `%`)

    def _read_rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._conn is None:
            return []
        return self._require().execute(self._sql(sql), tuple(params)).fetchall()

    def _serialise_run_logs(self, conn: SqlConnection, run_id: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_RUN_LOGS, run_id))

    def _run_moved(self, conn: SqlConnection, pool: str, state: RunState) -> None:
        if pool and (state.is_final or state in WAITING_STATES):
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, pool))

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        self._drop_listener()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if seconds > 0:
        (stop or threading.Event()).wait(seconds)


def shown_url(url: str) -> str:
    """The URL as errors and logs may show it: no user, no password (nor a `password=`
    parameter)."""
    try:
        bare = strip_credentials(url)
        parts = urlsplit(bare)
    except ValueError:
        return "the PostgreSQL store (its URL could not be parsed)"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _url_secrets(url: str) -> list[str]:
    """The URL's password as written (percent-encoded) and decoded, longest first."""
    try:
        parts = urlsplit(url)
        raw = [parts.netloc.rpartition("@")[0].partition(":")[2]]
        raw += [v for k, v in parse_qsl(parts.query) if k == "password"]
    except ValueError:
        return []
    found = {text for item in raw for text in (item, unquote(item), quote(item)) if text}
    return sorted(found, key=len, reverse=True)


class _PostgresTransaction:
    def __init__(self, conn: Connection, revision: int) -> None:
        self._conn = conn
        self.revision = revision
        self._now = _now()
        self.pools: set[str] = set()
        """Pools whose runs may have become claimable: notified at commit."""

    def put(self, resource: Resource) -> None:
        spec = resource.spec
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
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET type = excluded.type, paused = excluded.paused, "
                f"concurrency_limit = excluded.concurrency_limit, {owned_updates}",
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
                f"{owned_columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
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
            self.pools.add(spec["pool"])
        else:
            self._conn.execute(
                "INSERT INTO deployments (key, flow_name, name, pool_name, queue_name, paused, "
                f"entrypoint, parameter_schema, pull_steps, {owned_columns}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
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
            if spec.get("work_pool_name"):  # its concurrency limit may have been raised
                self.pools.add(str(spec["work_pool_name"]))

    def delete(self, kind: Kind, key: str) -> None:
        if kind is Kind.WORK_QUEUE:
            pool, name = key.split("/", 1)
            self._conn.execute(
                "DELETE FROM work_queues WHERE pool_name = %s AND name = %s", (pool, name)
            )
        elif kind is Kind.WORK_POOL:
            self._conn.execute("DELETE FROM work_pools WHERE name = %s", (key,))
        else:
            self._conn.execute("DELETE FROM deployments WHERE key = %s", (key,))

    def remove_scheduled_runs(self, deployment: str, keep_schedules: Iterable[str]) -> int:
        return remove_future_scheduled_runs(self._conn, deployment, keep_schedules)

    def check_fence(self, fence: Fence) -> None:
        # FOR SHARE: a takeover (which updates the row) waits for this transaction to end.
        row = self._conn.execute(
            "SELECT holder, token, expires_at FROM repo_leases WHERE name = %s FOR SHARE",
            (fence.lease,),
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
            "VALUES (%s, %s, %s, %s) ON CONFLICT (repo) DO UPDATE SET "
            "location = excluded.location, last_commit = excluded.last_commit, "
            "last_applied_at = excluded.last_applied_at",
            (repo, location, commit, self._now),
        )

    def record_plan(self, plan_json: dict[str, Any]) -> int:
        sources = [
            {"repo": s["repo"], "commit": s["commit"], "ref": s["ref"]}
            for s in plan_json.get("sources", [])
        ]
        row = self._conn.execute(
            "INSERT INTO applied_plans (applied_at, revision, sources, summary, plan) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (
                self._now,
                self.revision,
                canonical_json(sources),
                canonical_json(plan_json.get("summary", {})),
                canonical_json(plan_json),
            ),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def record_step_result(self, input_hash: str, step_name: str, outputs: Any) -> None:
        self._conn.execute(
            "INSERT INTO step_results (input_hash, step_name, outputs, created_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (input_hash) DO UPDATE SET "
            "outputs = excluded.outputs, created_at = excluded.created_at",
            (input_hash, step_name, canonical_json(outputs), self._now),
        )

    def set_variable(self, name: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO variables (name, value, updated_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (name, canonical_json(value), self._now),
        )

    def delete_variable(self, name: str) -> bool:
        cursor = self._conn.execute("DELETE FROM variables WHERE name = %s", (name,))
        return cursor.rowcount > 0

    def set_block(self, type_slug: str, name: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO blocks (type_slug, name, value, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (type_slug, name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (type_slug, name, canonical_json(value), self._now),
        )

    def delete_block(self, type_slug: str, name: str) -> bool:
        cursor = self._conn.execute(
            "DELETE FROM blocks WHERE type_slug = %s AND name = %s", (type_slug, name)
        )
        return cursor.rowcount > 0
