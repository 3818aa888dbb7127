"""What is PostgreSQL's own in the PostgreSQL store (the shared contract is in tests/contract):
a database that is not ours, read-only opens, the password kept out of every message, the
same tables as SQLite, recovery from a lost connection, and no deadlock between applies and
claims."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from reconciler.core.errors import StoreUrlError
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import NewRun, RunState
from reconciler.store import Store, open_store
from tests.contract.backends import deployment, pool, put_all, run_in_threads
from tests.infra.postgres_env import PostgresServer

pytestmark = pytest.mark.postgres

NOW = 1_800_000_000.0


def tables_of(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database's public schema."""
    with psycopg.connect(url) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in names
        }


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "read-only"])
def test_a_database_of_another_program_is_refused_and_left_alone(
    postgres_url: str, readonly: bool
) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")

    with pytest.raises(StoreUrlError) as caught:
        open_store(postgres_url, readonly=readonly)

    assert "not a reconciler store" in caught.value.message
    assert "users" in caught.value.message
    assert tables_of(postgres_url) == {"users": [(1, "ada")]}


def test_a_read_only_open_of_a_new_database_creates_nothing_and_refuses_to_write(
    postgres_url: str,
) -> None:
    store = open_store(postgres_url, readonly=True)
    try:
        assert store.revision() == 0 and not store.observe().resources
        assert store.list_runs() == [] and store.workers() == []
        with pytest.raises(RuntimeError), store.transaction():
            pass
        with pytest.raises(RuntimeError):
            store.create_run(NewRun("f/d", "f", "etl", "default", NOW))
    finally:
        store.close()

    assert tables_of(postgres_url) == {}


def test_a_read_only_open_of_a_store_reads_it_and_changes_nothing(postgres_url: str) -> None:
    writer = open_store(postgres_url)
    put_all(writer, pool("etl"), deployment("f", "d"))
    writer.create_run(NewRun("f/d", "f", "etl", "default", NOW))
    writer.close()
    before = tables_of(postgres_url)

    reader = open_store(postgres_url, readonly=True)
    try:
        assert reader.observe().revision == 1
        assert reader.get(Kind.DEPLOYMENT, "f/d") == deployment("f", "d")
        assert len(reader.list_runs()) == 1
        with pytest.raises(RuntimeError):
            reader.heartbeat("etl", "w", 10)
    finally:
        reader.close()

    assert tables_of(postgres_url) == before


def test_both_url_schemes_open_the_same_store(postgres_url: str) -> None:
    first = open_store(postgres_url)
    put_all(first, pool("etl"))
    first.close()

    other = open_store(postgres_url.replace("postgresql://", "postgres://", 1), readonly=True)
    try:
        assert [p.key for p in other.list_resources(Kind.WORK_POOL)] == ["etl"]
    finally:
        other.close()


def test_the_password_never_appears_in_errors_or_the_store_url(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    secret = "s3cr3t:p@ss/w%rd"
    with postgres_server.connect() as admin:
        admin.execute(f"CREATE ROLE tester LOGIN PASSWORD '{secret}'")
    host = f"{postgres_server.host}:{postgres_server.port}"
    database = postgres_url.rsplit("/", 1)[1]
    wrong = secret[::-1]
    attempts = {
        "wrong password": f"postgresql://tester:{quote(wrong, safe='')}@{host}/{database}",
        "no such database": f"postgresql://tester:{quote(secret, safe='')}@{host}/nowhere",
        "nothing listening": f"postgresql://tester:{quote(secret, safe='')}@127.0.0.1:1/x",
        "bad parameter": f"postgresql://tester:{quote(secret, safe='')}@{host}/x?color=red",
        "password parameter": f"postgresql://tester@{host}/nowhere?password={quote(wrong)}",
    }
    for what, url in attempts.items():
        with pytest.raises(StoreUrlError) as caught:
            open_store(url)
        shown = f"{caught.value.message} {caught.value.hint}"
        for text in (secret, wrong, quote(secret, safe=""), quote(wrong, safe=""), "s3cr3t"):
            assert text not in shown, f"{what}: {shown}"
        assert "postgresql://127.0.0.1" in shown or "postgres" in shown, shown
    assert "nowhere" in str(caught.value.message)

    with postgres_server.connect(database) as admin:
        admin.execute("GRANT ALL ON SCHEMA public TO tester")
    good = f"postgresql://tester:{quote(secret, safe='')}@{host}/{database}"
    store = open_store(good)
    try:
        assert "s3cr3t" not in store.url and store.url.endswith(f"{host}/{database}")
    finally:
        store.close()


def sqlite_columns(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        conn.close()


def test_postgresql_has_the_same_tables_and_columns_as_sqlite(
    postgres_url: str, tmp_path: Path
) -> None:
    open_store(postgres_url).close()
    open_store(f"sqlite:///{tmp_path / 'state.db'}").close()

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(str(table), []).append(str(column))

    assert {t: sorted(c) for t, c in columns.items()} == sqlite_columns(tmp_path / "state.db")


def test_times_keep_their_fractions_of_a_second(store_pg: Store) -> None:
    """Epoch seconds need a double: PostgreSQL's REAL would round them to minutes."""
    run = store_pg.create_run(NewRun("f/d", "f", "etl", "default", NOW + 0.125))
    store_pg.heartbeat("etl", "w", 0.25)

    found = store_pg.get_run(run.id)
    assert found is not None and found.scheduled_time == NOW + 0.125
    (worker,) = store_pg.workers()
    assert worker.heartbeat_interval == 0.25 and abs(worker.heartbeat_at - time.time()) < 5


@pytest.fixture
def store_pg(postgres_url: str) -> Any:
    store = open_store(postgres_url)
    yield store
    store.close()


def test_a_store_whose_connection_was_cut_works_again_on_the_next_call(
    postgres_server: PostgresServer, postgres_url: str, store_pg: Store
) -> None:
    put_all(store_pg, pool("etl"))
    with postgres_server.connect() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (postgres_url.rsplit("/", 1)[1],),
        )

    with pytest.raises(psycopg.OperationalError):
        store_pg.revision()
    assert store_pg.revision() == 1
    put_all(store_pg, pool("again"))
    assert store_pg.revision() == 2


def test_applies_and_claims_at_once_never_deadlock(postgres_url: str) -> None:
    """An apply deletes a deployment's scheduled runs, then rewrites its pool; claims lock the
    pool, then runs. Claims skip runs an apply holds, so neither waits on the other in a
    cycle: nothing fails with a deadlock, and every run still ends up claimed or removed."""
    setup = open_store(postgres_url)
    put_all(setup, pool("etl"), queue_of("etl"), deployment("f", "d"))
    stores = [open_store(postgres_url) for _ in range(4)]
    stop = threading.Event()
    removed: list[int] = []

    def apply() -> None:
        store = stores[0]
        limit = 1
        while not stop.is_set():
            with store.transaction() as tx:
                removed.append(tx.remove_scheduled_runs("f/d", keep_schedules=["keep"]))
                time.sleep(0.002)
                limit = limit % 5 + 1
                tx.put(pool("etl", concurrency_limit=limit * 10))

    def schedule() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            batch = [
                NewRun("f/d", "f", "etl", "default", NOW - 1, schedule_id=sid)
                for sid in ("keep", "drop")
                for _ in range(5)
            ]
            stores[1].create_runs(batch)
            stores[1].mark_late_runs(NOW - 0.5)

    def claim(store: Store) -> Any:
        def loop() -> None:
            while not stop.is_set():
                for run in store.claim_runs("etl", "w", limit=3, scheduled_before=NOW):
                    store.set_run_state(run.id, RunState.COMPLETED)

        return loop

    timer = threading.Timer(2.0, stop.set)
    timer.start()
    failures = run_in_threads(apply, schedule, claim(stores[2]), claim(stores[3]))
    timer.cancel()
    for store in stores:
        store.close()

    assert failures == [], failures
    assert sum(removed) > 0, "applies removed runs while claims ran"
    runs = setup.list_runs(limit=100_000)
    setup.close()
    assert any(run.state is RunState.COMPLETED for run in runs)


def queue_of(pool_name: str) -> Resource:
    body = {"pool": pool_name, "name": "default", "priority": 1, "paused": False}
    return Resource.of(Kind.WORK_QUEUE, f"{pool_name}/default", body, None)


def test_two_schedulers_creating_the_same_runs_in_any_order_make_each_once(
    postgres_url: str,
) -> None:
    """Two daemons' ticks may offer the same keyed runs in different orders at once: each run
    is made once, and neither tick fails with a deadlock."""
    stores = [open_store(postgres_url) for _ in range(2)]
    made: list[int] = []
    for round_ in range(5):
        runs = [
            NewRun("f/d", "f", "etl", "default", NOW + i, idempotency_key=f"r{round_}-{i}")
            for i in range(300)
        ]
        start = threading.Barrier(2)

        def create(store: Store, batch: list[NewRun], start: threading.Barrier = start) -> Any:
            def go() -> None:
                start.wait(timeout=10)
                made.append(store.create_runs(batch))

            return go

        failures = run_in_threads(create(stores[0], runs), create(stores[1], runs[::-1]))
        assert failures == [], failures

    assert sum(made) == 5 * 300
    assert len(stores[0].list_runs(limit=10_000)) == 5 * 300
    for store in stores:
        store.close()
