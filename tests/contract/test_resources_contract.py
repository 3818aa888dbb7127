"""The desired-resources part of the store contract (ResourceStore in reconciler/store/base.py),
for every backend: put, get, list and delete of pools, queues and deployments, the revision
and atomic transactions, one consistent snapshot, the history of applied plans and
repositories, and writers in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from reconciler.core.errors import StaleStateError
from reconciler.model.resources import Kind
from reconciler.store import Store
from tests.contract.backends import (
    REPO,
    SHA,
    Backend,
    assert_same_resource,
    deployment,
    plan_body,
    pool,
    put_all,
    queue,
    run_in_threads,
)

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


# --- two writers -------------------------------------------------------------------------------


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
