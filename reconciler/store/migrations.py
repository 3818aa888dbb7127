"""Versioned schema migrations. Each migration runs once, in order, inside a transaction;
`schema_migrations` records which ran. Never edit a released migration: add the next one.

The SQL is written to run on SQLite and PostgreSQL alike (TEXT JSON, ON CONFLICT upserts)
where it can. Where the two differ, a migration carries PostgreSQL's own DDL in `postgresql`,
with the same tables, columns and meaning: PostgreSQL's REAL is a 4-byte float (too coarse
for epoch seconds), so times are DOUBLE PRECISION there, and an id that SQLite numbers by
itself (`INTEGER PRIMARY KEY`) is an identity column. Both backends record the same versions
and names in `schema_migrations`.
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    postgresql: tuple[str, ...] | None = None
    """PostgreSQL's statements when they differ from `statements`."""

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        if dialect == POSTGRESQL and self.postgresql is not None:
            return self.postgresql
        return self.statements


_OWNED_COLUMNS = """
    spec TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    owner_repo TEXT,
    owner_file TEXT,
    source_commit TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            "INSERT INTO store_meta (key, value) VALUES ('revision', '0')",
            """CREATE TABLE repositories (
                repo TEXT PRIMARY KEY,
                location TEXT NOT NULL,
                last_commit TEXT,
                last_applied_at TEXT
            )""",
            f"""CREATE TABLE work_pools (
                name TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                paused BOOLEAN NOT NULL,
                concurrency_limit INTEGER,
                {_OWNED_COLUMNS}
            )""",
            f"""CREATE TABLE work_queues (
                pool_name TEXT NOT NULL REFERENCES work_pools(name) ON DELETE CASCADE,
                name TEXT NOT NULL,
                priority INTEGER NOT NULL,
                paused BOOLEAN NOT NULL,
                concurrency_limit INTEGER,
                {_OWNED_COLUMNS},
                PRIMARY KEY (pool_name, name)
            )""",
            f"""CREATE TABLE deployments (
                key TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                name TEXT NOT NULL,
                pool_name TEXT,
                queue_name TEXT,
                paused BOOLEAN NOT NULL,
                entrypoint TEXT NOT NULL,
                parameter_schema TEXT NOT NULL,
                pull_steps TEXT NOT NULL,
                {_OWNED_COLUMNS}
            )""",
            "CREATE INDEX deployments_owner ON deployments (owner_repo, owner_file)",
            "CREATE INDEX deployments_pool ON deployments (pool_name, queue_name)",
            """CREATE TABLE variables (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE blocks (
                type_slug TEXT NOT NULL,
                name TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (type_slug, name)
            )""",
            """CREATE TABLE applied_plans (
                id INTEGER PRIMARY KEY,
                applied_at TEXT NOT NULL,
                revision INTEGER NOT NULL,
                sources TEXT NOT NULL,
                summary TEXT NOT NULL,
                plan TEXT NOT NULL
            )""",
        ),
        postgresql=(
            """CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            "INSERT INTO store_meta (key, value) VALUES ('revision', '0')",
            """CREATE TABLE repositories (
                repo TEXT PRIMARY KEY,
                location TEXT NOT NULL,
                last_commit TEXT,
                last_applied_at TEXT
            )""",
            f"""CREATE TABLE work_pools (
                name TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                paused BOOLEAN NOT NULL,
                concurrency_limit INTEGER,
                {_OWNED_COLUMNS}
            )""",
            f"""CREATE TABLE work_queues (
                pool_name TEXT NOT NULL REFERENCES work_pools(name) ON DELETE CASCADE,
                name TEXT NOT NULL,
                priority INTEGER NOT NULL,
                paused BOOLEAN NOT NULL,
                concurrency_limit INTEGER,
                {_OWNED_COLUMNS},
                PRIMARY KEY (pool_name, name)
            )""",
            f"""CREATE TABLE deployments (
                key TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                name TEXT NOT NULL,
                pool_name TEXT,
                queue_name TEXT,
                paused BOOLEAN NOT NULL,
                entrypoint TEXT NOT NULL,
                parameter_schema TEXT NOT NULL,
                pull_steps TEXT NOT NULL,
                {_OWNED_COLUMNS}
            )""",
            "CREATE INDEX deployments_owner ON deployments (owner_repo, owner_file)",
            "CREATE INDEX deployments_pool ON deployments (pool_name, queue_name)",
            """CREATE TABLE variables (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE blocks (
                type_slug TEXT NOT NULL,
                name TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (type_slug, name)
            )""",
            """CREATE TABLE applied_plans (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                applied_at TEXT NOT NULL,
                revision INTEGER NOT NULL,
                sources TEXT NOT NULL,
                summary TEXT NOT NULL,
                plan TEXT NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        2,
        "results of build and push steps, by the hash of their inputs",
        (
            """CREATE TABLE step_results (
                input_hash TEXT PRIMARY KEY,
                step_name TEXT NOT NULL,
                outputs TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        3,
        "the daemon's status of each watched repository, and leases on repositories",
        (
            """CREATE TABLE repo_status (
                name TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE repo_leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at REAL NOT NULL
            )""",
        ),
        postgresql=(
            """CREATE TABLE repo_status (
                name TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE repo_leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        4,
        "flow runs, their logs, and workers' heartbeats",
        (
            """CREATE TABLE flow_runs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                deployment TEXT NOT NULL,
                flow_name TEXT NOT NULL,
                pool TEXT NOT NULL,
                queue TEXT NOT NULL,
                state TEXT NOT NULL,
                state_message TEXT,
                scheduled_time REAL NOT NULL,
                parameters TEXT NOT NULL,
                job_variables TEXT NOT NULL,
                worker TEXT,
                infrastructure_id TEXT,
                exit_code INTEGER,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                history TEXT NOT NULL,
                idempotency_key TEXT UNIQUE
            )""",
            "CREATE INDEX flow_runs_by_pool_state ON flow_runs (pool, state, scheduled_time)",
            "CREATE INDEX flow_runs_by_deployment ON flow_runs (deployment, scheduled_time)",
            """CREATE TABLE flow_run_logs (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                stream TEXT NOT NULL,
                line TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            """CREATE TABLE workers (
                pool TEXT NOT NULL,
                name TEXT NOT NULL,
                heartbeat_at REAL NOT NULL,
                heartbeat_interval REAL NOT NULL,
                started_at TEXT NOT NULL,
                PRIMARY KEY (pool, name)
            )""",
        ),
        postgresql=(
            """CREATE TABLE flow_runs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                deployment TEXT NOT NULL,
                flow_name TEXT NOT NULL,
                pool TEXT NOT NULL,
                queue TEXT NOT NULL,
                state TEXT NOT NULL,
                state_message TEXT,
                scheduled_time DOUBLE PRECISION NOT NULL,
                parameters TEXT NOT NULL,
                job_variables TEXT NOT NULL,
                worker TEXT,
                infrastructure_id TEXT,
                exit_code INTEGER,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                history TEXT NOT NULL,
                idempotency_key TEXT UNIQUE
            )""",
            "CREATE INDEX flow_runs_by_pool_state ON flow_runs (pool, state, scheduled_time)",
            "CREATE INDEX flow_runs_by_deployment ON flow_runs (deployment, scheduled_time)",
            """CREATE TABLE flow_run_logs (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                stream TEXT NOT NULL,
                line TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            """CREATE TABLE workers (
                pool TEXT NOT NULL,
                name TEXT NOT NULL,
                heartbeat_at DOUBLE PRECISION NOT NULL,
                heartbeat_interval DOUBLE PRECISION NOT NULL,
                started_at TEXT NOT NULL,
                PRIMARY KEY (pool, name)
            )""",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        5,
        "runs made by schedules: which schedule made each",
        (
            "ALTER TABLE flow_runs ADD COLUMN schedule_id TEXT",
            "CREATE INDEX flow_runs_by_schedule ON flow_runs (deployment, schedule_id, state)",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        6,
        "fencing tokens on leases: a holder whose lease was taken over cannot write",
        ("ALTER TABLE repo_leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0",),
    ),
)

_PREFECT_RUN_COLUMNS = (
    ("state_name", "TEXT"),
    ("run_count", "INTEGER NOT NULL DEFAULT 0"),
    ("parent_task_run_id", "TEXT"),
    ("prefect_state", "TEXT"),
    ("empirical_policy", "TEXT"),
    ("flow_version", "TEXT"),
    ("start_time", "TEXT"),
    ("end_time", "TEXT"),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        7,
        "prefect runtime records",
        (
            *(
                f"ALTER TABLE flow_runs ADD COLUMN {name} {kind}"
                for name, kind in _PREFECT_RUN_COLUMNS
            ),
            "CREATE INDEX flow_runs_by_parent_task_run ON flow_runs (parent_task_run_id)",
            """CREATE TABLE prefect_flows (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE task_runs (
                id TEXT PRIMARY KEY,
                flow_run_id TEXT,
                name TEXT NOT NULL,
                task_key TEXT NOT NULL,
                dynamic_key TEXT NOT NULL,
                state_type TEXT,
                state_name TEXT,
                state_message TEXT,
                state_timestamp TEXT,
                start_time TEXT,
                end_time TEXT,
                run_count INTEGER NOT NULL DEFAULT 0,
                cache_hit BOOLEAN NOT NULL DEFAULT FALSE,
                details TEXT NOT NULL
            )""",
            "CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id)",
            """CREATE TABLE events (
                id TEXT PRIMARY KEY,
                occurred TEXT NOT NULL,
                event TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                resource TEXT NOT NULL,
                related TEXT NOT NULL,
                payload TEXT NOT NULL,
                received_at TEXT NOT NULL
            )""",
            "CREATE INDEX events_by_resource ON events (resource_id, occurred)",
            """CREATE TABLE artifacts (
                id TEXT PRIMARY KEY,
                key TEXT,
                type TEXT,
                description TEXT,
                data TEXT NOT NULL,
                flow_run_id TEXT,
                task_run_id TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX artifacts_by_flow_run ON artifacts (flow_run_id)",
            "ALTER TABLE flow_run_logs ADD COLUMN level INTEGER",
            "ALTER TABLE flow_run_logs ADD COLUMN logger TEXT",
            "ALTER TABLE flow_run_logs ADD COLUMN task_run_id TEXT",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        8,
        "the web API's audit log, repositories whose automatic sync is suspended, runs by time",
        (
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY,
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            """CREATE TABLE sync_suspended (
                name TEXT PRIMARY KEY,
                suspended_at TEXT NOT NULL,
                actor TEXT NOT NULL
            )""",
            "CREATE INDEX flow_runs_by_time ON flow_runs (scheduled_time, state)",
        ),
        postgresql=(
            """CREATE TABLE audit_log (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            """CREATE TABLE sync_suspended (
                name TEXT PRIMARY KEY,
                suspended_at TEXT NOT NULL,
                actor TEXT NOT NULL
            )""",
            "CREATE INDEX flow_runs_by_time ON flow_runs (scheduled_time, state)",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        9,
        "operator overrides of git-owned deployments (reconcile deployment pause/resume)",
        (
            """CREATE TABLE deployment_overrides (
                deployment TEXT PRIMARY KEY,
                paused BOOLEAN NOT NULL,
                was_paused BOOLEAN NOT NULL,
                actor TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
