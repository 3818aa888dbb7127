"""The store contract: every backend honours the docstrings of reconciler/store/base.py.

One suite, run against each backend through the parametrized `backend` fixture. A backend is a
small adapter (`open`, plus two schema helpers the migration tests need): SQLite in a temporary
file, PostgreSQL in a fresh database on the session's server (tests/infra/postgres_env.py).
Tests at the end of the file are about the SQLite file itself (missing paths, files that are
not stores) and use SQLite directly; tests/postgres has PostgreSQL's own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from reconciler.errors import StaleLeaseError, StaleStateError, StoreUrlError
from reconciler.model import Kind, Owner, Resource
from reconciler.store import BlockRecord, Store, open_store
from reconciler.store.base import Fence
from reconciler.store.migrations import LATEST_VERSION, MIGRATIONS

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


# --- an empty store --------------------------------------------------------------------------


def test_a_new_store_is_empty_at_revision_zero(store: Store) -> None:
    assert store.revision() == 0
    for kind in Kind:
        assert store.list_resources(kind) == []
    observed = store.observe()
    assert (observed.revision, dict(observed.resources)) == (0, {})
    assert (dict(observed.variables), dict(observed.blocks)) == ({}, {})
    assert store.variables() == {}
    assert store.blocks() == []
    assert store.repositories() == []
    assert store.history() == []
    assert store.applied_plan(1) is None


# --- put, get, list ----------------------------------------------------------------------------


def test_put_then_get_returns_spec_owner_commit_and_hash_of_every_kind(store: Store) -> None:
    written = [pool("etl", concurrency_limit=4), queue("etl", "default"), deployment("f", "d")]
    put_all(store, *written)

    for resource in written:
        assert_same_resource(store.get(resource.kind, resource.key), resource)


def test_objects_made_by_hand_have_no_owner_and_no_commit(store: Store) -> None:
    hand_made = pool("manual", owner=None)
    put_all(store, hand_made)

    found = store.get(Kind.WORK_POOL, "manual")
    assert_same_resource(found, hand_made)
    assert found is not None and found.owner is None and found.source_commit is None


def test_get_of_a_missing_object_is_none(store: Store) -> None:
    put_all(store, pool("etl"))

    assert store.get(Kind.WORK_POOL, "other") is None
    assert store.get(Kind.DEPLOYMENT, "etl") is None, "keys are per kind"


def test_list_resources_returns_one_kind_sorted_by_key(store: Store) -> None:
    names = ["zeta", "Alpha", "beta", "_under", "émile", "a-b", "a_b", "10", "9"]
    put_all(
        store,
        *(pool(n) for n in names),
        *(queue("beta", n, priority=i + 1) for i, n in enumerate(["z", "a", "M"])),
        deployment("flow", "only"),
    )

    assert [r.key for r in store.list_resources(Kind.WORK_POOL)] == sorted(names)
    assert [r.key for r in store.list_resources(Kind.WORK_QUEUE)] == ["beta/M", "beta/a", "beta/z"]
    assert [r.key for r in store.list_resources(Kind.DEPLOYMENT)] == ["flow/only"]


def test_put_of_an_existing_key_replaces_the_object(store: Store) -> None:
    put_all(store, deployment("f", "d", description="first"))
    replacement = deployment("f", "d", owner=None, description="second", paused=True)
    put_all(store, replacement)

    assert_same_resource(store.get(Kind.DEPLOYMENT, "f/d"), replacement)
    assert len(store.list_resources(Kind.DEPLOYMENT)) == 1


def test_replacing_a_pool_keeps_its_queues(store: Store) -> None:
    put_all(store, pool("etl"), queue("etl", "default"), queue("etl", "backfill", 2))
    put_all(store, pool("etl", concurrency_limit=9))

    assert [q.key for q in store.list_resources(Kind.WORK_QUEUE)] == ["etl/backfill", "etl/default"]


def test_values_read_and_changed_by_the_caller_do_not_change_the_store(store: Store) -> None:
    with store.transaction() as tx:
        tx.put(deployment("f", "d"))
        tx.set_variable("regions", ["emea"])

    store.variables()["regions"].append("apac")
    store.observe().variables["regions"].append("amer")
    read = store.get(Kind.DEPLOYMENT, "f/d")
    assert read is not None
    read.spec["parameters"]["days"] = 99

    assert store.variables() == {"regions": ["emea"]}
    found = store.get(Kind.DEPLOYMENT, "f/d")
    assert found is not None and found.spec["parameters"]["days"] == 1


# --- delete ------------------------------------------------------------------------------------


def test_delete_removes_only_that_object(store: Store) -> None:
    put_all(store, pool("etl"), deployment("f", "a"), deployment("f", "b"))
    with store.transaction() as tx:
        tx.delete(Kind.DEPLOYMENT, "f/a")

    assert store.get(Kind.DEPLOYMENT, "f/a") is None
    assert [r.key for r in store.list_resources(Kind.DEPLOYMENT)] == ["f/b"]
    assert store.get(Kind.WORK_POOL, "etl") is not None


def test_deleting_a_queue_keeps_its_pool_and_the_other_queues(store: Store) -> None:
    put_all(store, pool("etl"), queue("etl", "default"), queue("etl", "backfill", 2))
    with store.transaction() as tx:
        tx.delete(Kind.WORK_QUEUE, "etl/backfill")

    assert [q.key for q in store.list_resources(Kind.WORK_QUEUE)] == ["etl/default"]
    assert store.get(Kind.WORK_POOL, "etl") is not None


def test_deleting_a_pool_deletes_its_queues_and_no_others(store: Store) -> None:
    put_all(
        store,
        pool("etl"),
        pool("etl-2"),
        queue("etl", "default"),
        queue("etl", "backfill", 2),
        queue("etl-2", "default"),
    )
    with store.transaction() as tx:
        tx.delete(Kind.WORK_POOL, "etl")

    assert [p.key for p in store.list_resources(Kind.WORK_POOL)] == ["etl-2"]
    assert [q.key for q in store.list_resources(Kind.WORK_QUEUE)] == ["etl-2/default"]
    assert store.observe().get(Kind.WORK_QUEUE, "etl/default") is None


# --- revision and atomicity --------------------------------------------------------------------


def test_revision_increases_by_one_per_committed_transaction(store: Store) -> None:
    seen = [store.revision()]
    put_all(store, pool("a"))
    seen.append(store.revision())
    with store.transaction() as tx:
        tx.set_variable("x", 1)
        tx.put(pool("b"))
    seen.append(store.revision())
    with store.transaction():
        pass  # a committed transaction that wrote nothing still counts
    seen.append(store.revision())

    assert seen == [0, 1, 2, 3]
    assert store.observe().revision == 3


class Boom(Exception):
    pass


def test_a_transaction_that_raises_writes_nothing_and_keeps_the_revision(
    store: Store,
) -> None:
    put_all(store, pool("etl"), queue("etl", "default"), deployment("f", "keep"))
    before = store.observe()

    with pytest.raises(Boom), store.transaction() as tx:
        tx.put(deployment("f", "new"))
        tx.put(pool("etl", concurrency_limit=1))
        tx.delete(Kind.DEPLOYMENT, "f/keep")
        tx.delete(Kind.WORK_POOL, "etl")
        tx.set_variable("v", 1)
        tx.set_block("secret", "token", "s3cr3t")
        tx.record_repository(REPO, "/src/flows", SHA)
        tx.record_plan(plan_body(1))
        raise Boom

    assert store.observe() == before
    assert store.revision() == 1
    assert store.repositories() == []
    assert store.history() == []


def test_the_store_is_usable_after_a_transaction_raised(store: Store) -> None:
    with pytest.raises(Boom), store.transaction() as tx:
        tx.put(pool("lost"))
        raise Boom
    put_all(store, pool("kept"))

    assert [p.key for p in store.list_resources(Kind.WORK_POOL)] == ["kept"]
    assert store.revision() == 1


def test_a_stale_expected_revision_raises_on_entry_and_writes_nothing(store: Store) -> None:
    put_all(store, pool("etl"))
    planned_at = 0  # a plan made before that write
    body_ran = False

    with pytest.raises(StaleStateError) as caught, store.transaction(planned_at) as tx:
        body_ran = True
        tx.put(pool("late"))

    assert not body_ran
    assert store.revision() == 1
    assert store.get(Kind.WORK_POOL, "late") is None
    assert "revision" in caught.value.message and caught.value.hint


def test_the_current_expected_revision_commits(store: Store) -> None:
    put_all(store, pool("etl"))

    with store.transaction(expected_revision=1) as tx:
        tx.put(pool("next"))

    assert store.revision() == 2
    assert store.get(Kind.WORK_POOL, "next") is not None


# --- observe -----------------------------------------------------------------------------------


def test_observe_returns_every_object_variable_and_block_with_the_revision(store: Store) -> None:
    objects = [pool("etl"), queue("etl", "default"), deployment("f", "d"), pool("hand", None)]
    with store.transaction() as tx:
        for resource in objects:
            tx.put(resource)
        tx.set_variable("region", "emea")
        tx.set_block("secret", "token", {"value": "s3cr3t", "nested": ["also-secret"]})

    observed = store.observe()

    assert observed.revision == store.revision() == 1
    assert dict(observed.resources) == {r.ident: r for r in objects}
    for resource in objects:
        assert_same_resource(observed.get(resource.kind, resource.key), resource)
    assert dict(observed.variables) == {"region": "emea"}
    assert dict(observed.blocks) == {
        ("secret", "token"): {"value": "s3cr3t", "nested": ["also-secret"]}
    }
    assert sorted(observed.secret_values) == ["also-secret", "s3cr3t"]


def test_observe_is_one_consistent_snapshot_while_another_writer_commits(
    backend: Backend,
) -> None:
    """Each commit writes the revision it will have into a pool, a variable and a block; a
    snapshot that mixed two revisions would show two different numbers."""
    writer, reader = backend.open(), backend.open()
    commits = 150
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for number in range(1, commits + 1):
                with writer.transaction() as tx:
                    tx.put(pool("p", concurrency_limit=number))
                    tx.set_variable("n", number)
                    tx.set_block("counter", "n", number)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    snapshots = []
    while not done.is_set() or not snapshots:
        observed = reader.observe()
        found = observed.get(Kind.WORK_POOL, "p")
        snapshots.append(
            (
                observed.revision,
                found.spec["concurrency_limit"] if found else 0,
                observed.variables.get("n", 0),
                observed.blocks.get(("counter", "n"), 0),
            )
        )
    thread.join()

    assert not failures
    mixed = [s for s in snapshots if len(set(s)) != 1]
    assert mixed == [], f"{len(mixed)} of {len(snapshots)} snapshots mixed revisions"
    assert reader.observe().revision == commits


# --- variables and blocks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["text", "", 0, 3.5, True, None, ["a", 1], {"nested": {"list": [1, 2]}}, "ünïcødé ☕"],
    ids=repr,
)
def test_a_variable_keeps_its_json_value(store: Store, value: Any) -> None:
    with store.transaction() as tx:
        tx.set_variable("v", value)

    assert store.variables() == {"v": value}
    assert store.observe().variables == {"v": value}


def test_setting_a_variable_again_replaces_it_and_delete_says_whether_it_existed(
    store: Store,
) -> None:
    with store.transaction() as tx:
        tx.set_variable("region", "emea")
        tx.set_variable("keep", 1)
    with store.transaction() as tx:
        tx.set_variable("region", "apac")
    assert store.variables() == {"keep": 1, "region": "apac"}

    with store.transaction() as tx:
        existed = tx.delete_variable("region")
        existed_again = tx.delete_variable("region")
        never = tx.delete_variable("never-set")

    assert (existed, existed_again, never) == (True, False, False)
    assert store.variables() == {"keep": 1}


def test_blocks_are_set_replaced_and_deleted_by_type_and_name(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_block("secret", "token", "one")
        tx.set_block("secret", "other", "x")
        tx.set_block("aws-credentials", "token", {"key": "k"})
    with store.transaction() as tx:
        tx.set_block("secret", "token", "two")

    assert store.blocks() == [
        BlockRecord("aws-credentials", "token", {"key": "k"}),
        BlockRecord("secret", "other", "x"),
        BlockRecord("secret", "token", "two"),
    ]
    with store.transaction() as tx:
        assert tx.delete_block("secret", "token") is True
        assert tx.delete_block("secret", "token") is False
        assert tx.delete_block("missing", "token") is False
    assert dict(store.observe().blocks) == {
        ("aws-credentials", "token"): {"key": "k"},
        ("secret", "other"): "x",
    }


# --- history and repositories ------------------------------------------------------------------


def test_step_results_are_kept_by_input_hash_replaced_and_rolled_back(store: Store) -> None:
    assert store.step_result("h1") is None
    with store.transaction() as tx:
        tx.record_step_result("h1", "build_docker_image", {"image": "r/x:1", "tag": "1"})
    assert store.step_result("h1") == {"image": "r/x:1", "tag": "1"}
    with store.transaction() as tx:
        tx.record_step_result("h1", "build_docker_image", {"image": "r/x:2"})
    assert store.step_result("h1") == {"image": "r/x:2"}
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.record_step_result("h2", "run_shell_script", {"stdout": "v"})
        raise RuntimeError("a failing apply")
    assert store.step_result("h2") is None


def test_history_lists_applied_plans_newest_first_without_their_body(store: Store) -> None:
    ids = []
    for number in (1, 2, 3):
        with store.transaction() as tx:
            ids.append(tx.record_plan(plan_body(number)))

    history = store.history()
    assert ids == sorted(set(ids)), "ids grow with each plan"
    assert [h.id for h in history] == ids[::-1]
    assert [h.revision for h in history] == [3, 2, 1], "the revision each plan committed"
    assert [h.summary for h in history] == [plan_body(n)["summary"] for n in (3, 2, 1)]
    assert history[0].sources == [{"repo": REPO, "commit": SHA, "ref": "main"}]
    assert all(h.plan is None and h.applied_at for h in history)
    assert [h.id for h in store.history(limit=2)] == ids[:0:-1]


def test_applied_plan_returns_the_full_plan_body(store: Store) -> None:
    with store.transaction() as tx:
        first = tx.record_plan(plan_body(1))
    with store.transaction() as tx:
        second = tx.record_plan(plan_body(2))

    record = store.applied_plan(first)
    assert record is not None
    assert (record.id, record.revision, record.plan) == (first, 1, plan_body(1))
    assert record.summary == plan_body(1)["summary"]
    assert store.applied_plan(second) is not None
    assert store.applied_plan(second + 100) is None


def test_repositories_remember_the_last_applied_commit(store: Store) -> None:
    with store.transaction() as tx:
        tx.record_repository(REPO, "/src/flows", "a" * 40)
        tx.record_repository("/local/worktree", "/local/worktree", None)
    with store.transaction() as tx:
        tx.record_repository(REPO, "https://github.com/acme/flows", SHA)

    found = {r.repo: r for r in store.repositories()}
    assert set(found) == {REPO, "/local/worktree"}
    assert (found[REPO].location, found[REPO].last_commit) == ("https://github.com/acme/flows", SHA)
    assert found["/local/worktree"].last_commit is None
    assert all(r.last_applied_at for r in found.values())


# --- daemon status and leases --------------------------------------------------------------------


def test_repo_status_is_replaced_whole_and_does_not_change_the_revision(store: Store) -> None:
    store.put_repo_status("flows", {"state": "Progressing", "fetched_commit": SHA})
    store.put_repo_status("etl", {"state": "Synced"})
    store.put_repo_status("flows", {"state": "Synced", "applied_commit": SHA})

    found = {r.name: r for r in store.repo_statuses()}
    assert [r.name for r in store.repo_statuses()] == ["etl", "flows"]
    assert found["flows"].status == {"state": "Synced", "applied_commit": SHA}
    assert found["flows"].updated_at
    assert store.revision() == 0


def test_the_scheduling_policy_is_replaced_whole_and_does_not_change_the_revision(
    store: Store,
) -> None:
    assert store.scheduling_policy() is None
    store.set_scheduling_policy('{"late": {"skip": true}}')
    store.set_scheduling_policy('{"late": {"skip": false}}')
    assert store.scheduling_policy() == '{"late": {"skip": false}}'
    assert store.revision() == 0


def test_a_lease_is_exclusive_until_released_or_expired(store: Store) -> None:
    assert store.acquire_lease("flows", "daemon-a", 30) is None
    assert store.acquire_lease("flows", "daemon-b", 30) == "daemon-a"
    assert store.acquire_lease("flows", "daemon-a", 30) is None  # renewal
    assert store.acquire_lease("etl", "daemon-b", 30) is None  # another repository

    store.release_lease("flows", "daemon-b")  # not the holder: nothing happens
    assert store.acquire_lease("flows", "daemon-b", 30) == "daemon-a"
    store.release_lease("flows", "daemon-a")
    assert store.acquire_lease("flows", "daemon-b", 0.2) is None

    time.sleep(0.3)  # expired
    assert store.acquire_lease("flows", "daemon-c", 30) is None
    assert store.acquire_lease("flows", "daemon-d", 30, replacing="daemon-c") is None
    assert store.acquire_lease("flows", "daemon-c", 30) == "daemon-d"


def test_lease_tokens_grow_with_every_new_holder_and_fence_stale_writes(store: Store) -> None:
    assert store.acquire_lease("leader", "a", 0.2) is None
    first = store.lease_token("leader", "a")
    assert first is not None and store.lease_token("leader", "b") is None
    assert store.acquire_lease("leader", "a", 0.2) is None
    assert store.lease_token("leader", "a") == first  # a renewal keeps the token
    time.sleep(0.3)
    assert store.lease_token("leader", "a") is None  # lapsed
    assert store.acquire_lease("leader", "b", 30) is None
    second = store.lease_token("leader", "b")
    assert second is not None and second > first

    stale, current = Fence("leader", "a", first), Fence("leader", "b", second)
    with pytest.raises(StaleLeaseError), store.transaction() as tx:
        tx.check_fence(stale)
        tx.put(pool("written-by-a-deposed-holder"))
    assert store.get(Kind.WORK_POOL, "written-by-a-deposed-holder") is None
    assert store.revision() == 0
    with store.transaction() as tx:
        tx.check_fence(current)
        tx.put(pool("written-by-the-holder"))
    assert store.get(Kind.WORK_POOL, "written-by-the-holder") is not None

    store.release_lease("leader", "b")
    assert store.acquire_lease("leader", "a", 30) is None
    third = store.lease_token("leader", "a")
    assert third is not None and third > second  # released rows keep counting


def test_of_many_racing_for_a_lease_exactly_one_gets_it(backend: Backend) -> None:
    stores = [backend.open() for _ in range(6)]
    start = threading.Barrier(len(stores))
    winners: list[str] = []

    def racer(index: int) -> Callable[[], None]:
        def race() -> None:
            start.wait(timeout=10)
            if stores[index].acquire_lease("flows", f"daemon-{index}", 30) is None:
                winners.append(f"daemon-{index}")

        return race

    assert run_in_threads(*(racer(i) for i in range(len(stores)))) == []
    assert len(winners) == 1


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


# --- two writers -------------------------------------------------------------------------------


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


def test_two_writers_at_once_are_serialised_and_both_commit(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    first_inside = threading.Event()
    second_saw_first: list[bool] = []

    def write_first() -> None:
        with first.transaction() as tx:
            first_inside.set()
            tx.put(pool("from-first"))
            time.sleep(0.15)  # hold the write lock while the second writer arrives
            tx.record_plan(plan_body(1))

    def write_second() -> None:
        assert first_inside.wait(timeout=10)
        with second.transaction() as tx:
            second_saw_first.append(second.get(Kind.WORK_POOL, "from-first") is not None)
            tx.put(pool("from-second"))
            tx.record_plan(plan_body(2))

    assert run_in_threads(write_first, write_second) == []

    assert second_saw_first == [True], "the second writer waited for the first to commit"
    assert first.revision() == second.revision() == 2
    assert [p.key for p in first.list_resources(Kind.WORK_POOL)] == ["from-first", "from-second"]
    assert sorted(h.revision for h in first.history()) == [1, 2]


def test_two_writers_planned_at_the_same_revision_one_wins_one_is_stale(
    backend: Backend,
) -> None:
    first, second = backend.open(), backend.open()
    first_inside = threading.Event()
    outcome: list[str] = []

    def write_first() -> None:
        with first.transaction(expected_revision=0) as tx:
            first_inside.set()
            time.sleep(0.1)
            tx.put(pool("winner"))
        outcome.append("first committed")

    def write_second() -> None:
        assert first_inside.wait(timeout=10)
        try:
            with second.transaction(expected_revision=0) as tx:
                tx.put(pool("loser"))
        except StaleStateError:
            outcome.append("second stale")

    assert run_in_threads(write_first, write_second) == []

    assert sorted(outcome) == ["first committed", "second stale"]
    assert second.revision() == 1
    assert [p.key for p in second.list_resources(Kind.WORK_POOL)] == ["winner"]


def test_many_concurrent_writers_each_get_their_own_revision(backend: Backend) -> None:
    writers, commits_each = 4, 8
    stores = [backend.open() for _ in range(writers)]

    def writer(index: int) -> Callable[[], None]:
        def run() -> None:
            for number in range(commits_each):
                with stores[index].transaction() as tx:
                    tx.put(pool(f"w{index}-{number}"))
                    tx.record_plan(plan_body(number + 1))

        return run

    assert run_in_threads(*(writer(i) for i in range(writers))) == []

    total = writers * commits_each
    assert stores[0].revision() == total
    assert len(stores[0].list_resources(Kind.WORK_POOL)) == total
    assert sorted(h.revision for h in stores[0].history(limit=total)) == list(range(1, total + 1))


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
