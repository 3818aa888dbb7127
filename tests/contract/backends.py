"""The backends of the store contract, and the helpers its test modules share.

Each contract module holds one concern of the store (store/base.py's narrow protocols) and
runs against each backend through the parametrized `backend` fixture. A backend is a small
adapter (`open`, plus two schema helpers the migration tests need): SQLite in a temporary
file, PostgreSQL in a fresh database on the session's server (tests/infra/postgres_env.py,
marked `postgres`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from reconciler.model.resources import Kind, Owner, Resource
from reconciler.store import Store, open_store

REPO = "github.com/acme/flows"
FILE = Owner(REPO, "prefect.yaml")
POOLS = Owner(REPO, "work-pools.yaml")
SHA = "0123456789abcdef0123456789abcdef01234567"


# --- backends --------------------------------------------------------------------------------


class Backend(Protocol):
    """How the suite reaches one kind of store."""

    def open(self, *, readonly: bool = False) -> Store: ...

    def applied_migrations(self) -> list[tuple[int, str, str]]:
        """Rows of the migration record: version, name, when it ran."""
        ...

    def pretend_newer_schema(self, version: int) -> None:
        """Record a migration this code does not know, as a newer reconciler would."""
        ...


class SqliteBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.opened: list[Store] = []

    def open(self, *, readonly: bool = False) -> Store:
        store = open_store(self.url, readonly=readonly)
        self.opened.append(store)
        return store

    def applied_migrations(self) -> list[tuple[int, str, str]]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
            return [tuple(row) for row in rows]

    def pretend_newer_schema(self, version: int) -> None:
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, "from the future", "2099-01-01T00:00:00+00:00"),
                )
        finally:
            conn.close()

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


class PostgresBackend:
    """A fresh database on the session's PostgreSQL server (tests/infra/postgres_env.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[Store] = []

    def open(self, *, readonly: bool = False) -> Store:
        store = open_store(self.url, readonly=readonly)
        self.opened.append(store)
        return store

    def applied_migrations(self) -> list[tuple[int, str, str]]:
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
        return [(int(v), str(name), str(at)) for v, name, at in rows]

    def pretend_newer_schema(self, version: int) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, "from the future", "2099-01-01T00:00:00+00:00"),
            )

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: SqliteBackend | PostgresBackend
    if request.param == "postgresql":
        made = PostgresBackend(request.getfixturevalue("postgres_url"))
    else:
        made = SqliteBackend(tmp_path / "state.db")
    yield made
    made.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


# --- resources -------------------------------------------------------------------------------


def pool(name: str, owner: Owner | None = POOLS, **spec: Any) -> Resource:
    body = {"name": name, "type": "process", "paused": False, "concurrency_limit": None, **spec}
    return Resource.of(Kind.WORK_POOL, name, body, owner, SHA if owner else None)


def queue(pool_name: str, name: str, priority: int = 1, owner: Owner | None = POOLS) -> Resource:
    body = {"pool": pool_name, "name": name, "priority": priority, "paused": False}
    return Resource.of(Kind.WORK_QUEUE, f"{pool_name}/{name}", body, owner, SHA)


def deployment(flow: str, name: str, owner: Owner | None = FILE, **spec: Any) -> Resource:
    body = {
        "name": name,
        "flow_name": flow,
        "entrypoint": "flows/etl.py:main",
        "work_pool_name": "etl",
        "work_queue_name": "default",
        "paused": False,
        "parameters": {"days": 1, "regions": ["emea", "apac"], "note": "naïve café ☕"},
        "parameter_openapi_schema": {"type": "object", "properties": {"days": {"type": "integer"}}},
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "/x"}}],
        **spec,
    }
    return Resource.of(Kind.DEPLOYMENT, f"{flow}/{name}", body, owner, SHA)


def put_all(store: Store, *resources: Resource) -> None:
    with store.transaction() as tx:
        for resource in resources:
            tx.put(resource)


def assert_same_resource(found: Resource | None, expected: Resource) -> None:
    assert found is not None, f"{expected.kind.label} {expected.key} was not stored"
    assert found == expected
    assert found.spec == expected.spec
    assert found.hash == expected.hash
    assert found.owner == expected.owner
    assert found.source_commit == expected.source_commit


def plan_body(number: int) -> dict[str, Any]:
    return {
        "format_version": 1,
        "observed_revision": number - 1,
        "sources": [
            {"repo": REPO, "location": "/src/flows", "ref": "main", "commit": SHA, "files": []}
        ],
        "summary": {"add": number, "change": 0, "destroy": 0},
        "unchanged": 0,
        "changes": [{"action": "create", "kind": "work_pool", "key": f"pool-{number}"}],
        "diagnostics": [],
    }


def run_in_threads(*targets: Callable[[], None]) -> list[BaseException]:
    failures: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the caller
                failures.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return failures
