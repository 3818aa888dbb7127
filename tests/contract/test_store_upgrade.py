"""Upgrade in place: a store written by reconciler at commit 349920d (the last with a separate
SQLite and PostgreSQL code path) is opened by this version, which upgrades it, and reads back
exactly what that version read: resources, history, runs, logs, workers, task runs and every
other record. Then it takes new writes after the old data.

The test data (tests/data/store-349920d) was made by tests/contract/store_dump.py run against
that commit: a SQLite file, and a pg_dump of a PostgreSQL database filled alike.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconciler.core.errors import StoreUrlError
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import NewRun, RunState
from reconciler.store import open_store
from reconciler.store.migrations import LATEST_VERSION
from tests.contract.store_dump import NOW, dump

DATA = Path(__file__).resolve().parents[1] / "data" / "store-349920d"


def restore_postgres(url: str) -> None:
    """Load the pg_dump into the (empty) database at `url`; psql's meta-commands (`\\...`)
    are not SQL and are left out."""
    script = "\n".join(
        line
        for line in (DATA / "postgres.sql").read_text().splitlines()
        if not line.startswith("\\")
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script.encode())


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The URL of a store as 349920d left it, and what 349920d read of it."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        restore_postgres(url)
        expected = json.loads((DATA / "expected-postgres.json").read_text())
    else:
        shutil.copy(DATA / "state.db", tmp_path / "state.db")
        url = f"sqlite:///{tmp_path / 'state.db'}"
        expected = json.loads((DATA / "expected.json").read_text())
    yield url, expected


def test_a_store_written_by_349920d_reads_back_the_same_after_the_upgrade(
    old_store: tuple[str, Any],
) -> None:
    url, expected = old_store
    store = open_store(url)
    try:
        found = dump(store)
    finally:
        store.close()

    assert sorted(found) == sorted(expected)
    for part in expected:  # one part at a time: a failure names what was lost
        assert found[part] == expected[part], part
    assert len(found["runs"]) == 7 and found["task_runs"] and found["workers"]


def test_a_read_only_open_of_the_old_store_asks_for_the_upgrade_then_reads_it(
    old_store: tuple[str, Any],
) -> None:
    url, expected = old_store
    # a dry-run never migrates: it says what to do, and the store is left as it was
    with pytest.raises(StoreUrlError) as refused:
        open_store(url, readonly=True)
    assert f"needs a schema upgrade (version 7 to {LATEST_VERSION})" in refused.value.message
    assert "without --dry-run" in (refused.value.hint or "")
    open_store(url).close()  # the upgrade, as the first apply does it
    store = open_store(url, readonly=True)
    try:
        assert store.revision() == expected["revision"] == 2
        assert [r.id for r in store.list_runs(limit=1000)] == [r["id"] for r in expected["runs"]]
        assert store.history(limit=100)[0].id == expected["history"][0]["id"]
    finally:
        store.close()


def test_the_upgraded_store_takes_new_writes_after_the_old_data(
    old_store: tuple[str, Any],
) -> None:
    url, expected = old_store
    store = open_store(url)
    try:
        spec = {"name": "new", "type": "process", "paused": False}
        with store.transaction(expected_revision=expected["revision"]) as tx:
            tx.put(Resource.of(Kind.WORK_POOL, "new", spec, None))
            plan_id = tx.record_plan({"sources": [], "summary": {"create": 1}})
        assert plan_id == max(p["id"] for p in expected["history"]) + 1
        assert store.revision() == expected["revision"] + 1

        manual = next(r for r in expected["runs"] if r["parameters"] == {"hour": -1})
        store.append_run_logs(manual["id"], [("stdout", "after the upgrade")])
        lines = store.run_logs(manual["id"])
        assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
        assert lines[-1].line == "after the upgrade"

        again = store.create_run(
            NewRun("etl/hourly", "etl", "etl", "default", NOW, idempotency_key="etl/hourly@0")
        )
        first = next(r for r in expected["runs"] if r["idempotency_key"] == "etl/hourly@0")
        assert again.id == first["id"], "an idempotency key of the old data is still known"
        claimed = store.claim_runs("etl", "worker-9", limit=10, scheduled_before=NOW + 3600)
        assert [run.state for run in claimed] == [RunState.PENDING] * len(claimed)
        assert claimed, "the old scheduled runs are claimable"
    finally:
        store.close()
    reopened = open_store(url)
    try:
        assert reopened.get(Kind.WORK_POOL, "new") is not None
    finally:
        reopened.close()


def test_the_upgraded_store_is_at_the_latest_schema_version(old_store: tuple[str, Any]) -> None:
    url, _ = old_store
    open_store(url).close()
    if url.startswith("sqlite"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        conn.close()
    else:
        with psycopg.connect(url) as pg:
            versions = [row[0] for row in pg.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == list(range(1, LATEST_VERSION + 1))
