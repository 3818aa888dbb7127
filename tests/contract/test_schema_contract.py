"""Opening a store, for every backend: a new store is migrated to the latest schema once, a
newer one is refused; then what only the SQLite file has (missing paths, read-only opens,
files that are not stores), with SQLite directly (tests/postgres has PostgreSQL's own).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.errors import StoreUrlError
from reconciler.model.resources import Kind
from reconciler.store import open_store
from reconciler.store.migrations import LATEST_VERSION, MIGRATIONS
from tests.contract.backends import (
    Backend,
    deployment,
    pool,
    put_all,
)

# --- migrations --------------------------------------------------------------------------------


def test_a_new_store_is_at_the_latest_schema_version(backend: Backend) -> None:
    backend.open()

    applied = backend.applied_migrations()
    assert [(v, name) for v, name, _ in applied] == [(m.version, m.name) for m in MIGRATIONS]
    assert applied[-1][0] == LATEST_VERSION


def test_reopening_a_store_keeps_its_data_and_runs_no_migration_again(backend: Backend) -> None:
    first = backend.open()
    put_all(first, pool("etl"))
    first.close()
    migrated = backend.applied_migrations()

    again = backend.open()

    assert backend.applied_migrations() == migrated
    assert again.revision() == 1
    assert again.get(Kind.WORK_POOL, "etl") == pool("etl")


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "read-only"])
def test_a_store_from_a_newer_reconciler_is_refused(backend: Backend, readonly: bool) -> None:
    backend.open().close()
    backend.pretend_newer_schema(LATEST_VERSION + 1)

    with pytest.raises(StoreUrlError) as caught:
        backend.open(readonly=readonly)

    message = caught.value.message
    assert "newer" in message and str(LATEST_VERSION + 1) in message
    assert caught.value.hint and "upgrade" in caught.value.hint
    assert backend.applied_migrations()[-1][0] == LATEST_VERSION + 1, "left as it was"


# --- the SQLite file ---------------------------------------------------------------------------


def test_read_only_open_of_a_missing_path_creates_nothing_and_reads_as_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not" / "yet" / "state.db"
    store = open_store(f"sqlite:///{path}", readonly=True)

    assert store.revision() == 0
    assert store.observe().revision == 0 and not store.observe().resources
    assert store.list_resources(Kind.DEPLOYMENT) == []
    assert store.get(Kind.WORK_POOL, "etl") is None
    assert (store.variables(), store.blocks(), store.history()) == ({}, [], [])
    assert store.repositories() == [] and store.applied_plan(1) is None
    store.close()
    assert not (tmp_path / "not").exists()


def test_read_only_open_while_another_process_creates_the_store_reads_as_empty(
    tmp_path: Path,
) -> None:
    """A dry-run racing the first apply: the file exists, its schema is not committed yet."""
    path = tmp_path / "state.db"
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    creator.execute("BEGIN IMMEDIATE")  # migrations under way, not committed
    creator.execute("CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    store = open_store(f"sqlite:///{path}", readonly=True)
    assert store.revision() == 0 and not store.observe().resources
    store.close()
    creator.execute("ROLLBACK")
    creator.close()


def test_a_read_only_store_refuses_to_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_store(url).close()
    store = open_store(url, readonly=True)
    try:
        with pytest.raises(RuntimeError), store.transaction():
            pass
        assert store.revision() == 0
    finally:
        store.close()


def test_a_read_only_open_of_an_existing_store_reads_it_and_changes_nothing(
    tmp_path: Path, dump_store: Callable[[str], dict[str, list[tuple[object, ...]]]]
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    writer = open_store(url)
    put_all(writer, pool("etl"), deployment("f", "d"))
    writer.close()
    before = dump_store(url)

    reader = open_store(url, readonly=True)
    assert reader.observe().revision == 1
    assert reader.get(Kind.DEPLOYMENT, "f/d") == deployment("f", "d")
    reader.close()

    assert dump_store(url) == before


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "read-only"])
def test_a_file_that_is_not_sqlite_is_refused_clearly_and_left_alone(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)

    with pytest.raises(StoreUrlError) as caught:
        open_store(f"sqlite:///{path}", readonly=readonly)

    assert str(path) in caught.value.message and "not a database" in caught.value.message
    assert caught.value.hint and "store" in caught.value.hint
    assert path.read_bytes() == content


def test_a_sqlite_database_of_another_program_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()

    with pytest.raises(StoreUrlError) as caught:
        open_store(f"sqlite:///{path}")

    assert "not a reconciler store" in caught.value.message and "users" in caught.value.message
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["users"]


def test_a_store_in_a_new_directory_is_created_with_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.db"
    store = open_store(str(path))
    put_all(store, pool("etl"))
    store.close()

    assert os.path.isfile(path)
    reopened = open_store(f"sqlite:///{path}", readonly=True)
    assert reopened.revision() == 1
    reopened.close()
