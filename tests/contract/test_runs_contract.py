"""The flow-run part of the store contract (reconciler/store/base.py), for every backend:
claims are atomic and ordered as Prefect's are, limits hold exactly, final states are final,
and runs of a dead worker are found."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import FlowRun, NewRun, RunState
from reconciler.store import Store
from tests.contract.backends import (
    Backend,
    deployment,
    pool,
    put_all,
    run_in_threads,
)

NOW = 1_800_000_000.0


def queue(pool_name: str, name: str, priority: int, **spec: Any) -> Resource:
    body = {"pool": pool_name, "name": name, "priority": priority, "paused": False, **spec}
    return Resource.of(Kind.WORK_QUEUE, f"{pool_name}/{name}", body, None)


def setup_pool(store: Store, *, pool_limit: int | None = None, **queue_specs: Any) -> None:
    queues = queue_specs or {"default": {"priority": 1}}
    put_all(
        store,
        pool("etl", concurrency_limit=pool_limit),
        *(queue("etl", name, **spec) for name, spec in queues.items()),
    )


def schedule(store: Store, queue_name: str = "default", at: float = NOW, **extra: Any) -> str:
    new = NewRun("flow/dep", "flow", "etl", queue_name, at, **extra)
    return store.create_run(new).id


def claim(store: Store, worker: str = "w1", limit: int = 100, **options: Any) -> list[str]:
    runs = store.claim_runs("etl", worker, limit=limit, scheduled_before=NOW + 10, **options)
    return [run.id for run in runs]


def test_a_run_is_created_scheduled_with_its_history(store: Store) -> None:
    run = store.create_run(
        NewRun("flow/dep", "flow", "etl", "default", NOW, {"days": 2}, {"image": "x"})
    )
    found = store.get_run(run.id)
    assert found == run
    assert run.state is RunState.SCHEDULED and run.name
    assert (run.parameters, run.job_variables) == ({"days": 2}, {"image": "x"})
    assert [change.state for change in run.history] == [RunState.SCHEDULED]
    assert store.find_runs(run.id[:8]) == [run]


def test_an_idempotency_key_creates_one_run(store: Store) -> None:
    first = schedule(store, idempotency_key="flow/dep@1800000000")
    again = schedule(store, idempotency_key="flow/dep@1800000000")
    assert first == again
    assert len(store.list_runs()) == 1


def test_priority_beats_lateness_then_scheduled_time(store: Store) -> None:
    setup_pool(store, high={"priority": 1}, low={"priority": 5})
    late_low = schedule(store, "low", at=NOW - 100)
    high_later = schedule(store, "high", at=NOW - 1)
    high_first = schedule(store, "high", at=NOW - 50)
    future = schedule(store, "high", at=NOW + 3600)
    assert claim(store) == [high_first, high_later, late_low]
    assert store.get_run(future).state is RunState.SCHEDULED  # type: ignore[union-attr]


def test_claimed_runs_are_pending_under_the_worker_and_not_claimed_again(store: Store) -> None:
    setup_pool(store)
    run_id = schedule(store)
    assert claim(store, "w1") == [run_id]
    assert claim(store, "w2") == []
    run = store.get_run(run_id)
    assert run is not None and run.state is RunState.PENDING and run.worker == "w1"


def test_pool_and_queue_limits_count_active_runs_exactly(store: Store) -> None:
    setup_pool(
        store, pool_limit=3, small={"priority": 1, "concurrency_limit": 1}, big={"priority": 2}
    )
    small = [schedule(store, "small") for _ in range(3)]
    big = [schedule(store, "big") for _ in range(5)]
    first = claim(store)
    assert first == [small[0], big[0], big[1]]  # queue limit 1, pool limit 3
    assert claim(store) == []
    store.set_run_state(first[0], RunState.RUNNING)
    assert claim(store) == []  # RUNNING still holds its slot
    store.set_run_state(first[0], RunState.COMPLETED)
    assert claim(store) == [small[1]]
    store.set_run_state(first[1], RunState.FAILED, exit_code=1)
    assert claim(store) == [big[2]]


def test_paused_pools_and_queues_deliver_nothing(store: Store) -> None:
    setup_pool(store, open={"priority": 1}, shut={"priority": 2, "paused": True})
    shut = schedule(store, "shut")
    opened = schedule(store, "open")
    assert claim(store) == [opened]
    assert claim(store) == []
    assert store.get_run(shut).state is RunState.SCHEDULED  # type: ignore[union-attr]
    put_all(store, pool("etl", paused=True))
    schedule(store, "open")
    assert claim(store) == []


def test_a_claim_can_be_narrowed_to_queues_and_limited(store: Store) -> None:
    setup_pool(store, a={"priority": 1}, b={"priority": 2})
    in_a = [schedule(store, "a") for _ in range(3)]
    in_b = schedule(store, "b")
    assert claim(store, queues=["b"]) == [in_b]
    assert claim(store, limit=2) == in_a[:2]


def test_many_workers_claiming_at_once_never_get_the_same_run(backend: Backend) -> None:
    setup = backend.open()
    setup_pool(setup)
    runs = {schedule(setup) for _ in range(200)}
    stores = [backend.open() for _ in range(4)]
    got: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(index: int) -> Any:
        def loop() -> None:
            while True:
                claimed = claim(stores[index], f"w{index}", limit=3)
                if not claimed and not setup.has_claimable_runs("etl", NOW + 10):
                    return
                with lock:
                    got.update(claimed)

        return loop

    assert run_in_threads(*(worker(i) for i in range(4))) == []
    assert set(got) == runs
    assert max(got.values()) == 1


def test_final_states_are_final_and_expected_states_guard_moves(store: Store) -> None:
    setup_pool(store)
    run_id = schedule(store)
    claim(store)
    assert store.set_run_state(run_id, RunState.RUNNING, expected=[RunState.SCHEDULED]) is None
    moved = store.set_run_state(
        run_id, RunState.RUNNING, expected=[RunState.PENDING], infrastructure_id="pid 42"
    )
    assert moved is not None and moved.infrastructure_id == "pid 42"
    done = store.set_run_state(run_id, RunState.COMPLETED, "exit 0", exit_code=0)
    assert done is not None and done.exit_code == 0
    assert store.set_run_state(run_id, RunState.CRASHED, "late") is None
    final = store.get_run(run_id)
    assert final is not None and final.state is RunState.COMPLETED
    assert [c.state for c in final.history] == [
        RunState.SCHEDULED,
        RunState.PENDING,
        RunState.RUNNING,
        RunState.COMPLETED,
    ]


def test_cancel_depends_on_the_state(store: Store) -> None:
    setup_pool(store)
    waiting = schedule(store)
    assert store.cancel_run(waiting).state is RunState.CANCELLED  # type: ignore[union-attr]
    running = schedule(store)
    claim(store)
    store.set_run_state(running, RunState.RUNNING)
    assert store.cancel_run(running).state is RunState.CANCELLING  # type: ignore[union-attr]
    store.set_run_state(running, RunState.CANCELLED, expected=[RunState.CANCELLING])
    assert store.cancel_run(running).state is RunState.CANCELLED  # type: ignore[union-attr]
    assert store.cancel_run("no-such-run") is None


def test_logs_are_numbered_in_order_and_read_after_a_mark(store: Store) -> None:
    setup_pool(store)
    run_id = schedule(store)
    store.append_run_logs(run_id, [("stdout", "one"), ("stderr", "two")])
    store.append_run_logs(run_id, [("stdout", "three")])
    lines = store.run_logs(run_id)
    assert [(line.seq, line.stream, line.line) for line in lines] == [
        (1, "stdout", "one"),
        (2, "stderr", "two"),
        (3, "stdout", "three"),
    ]
    assert [line.line for line in store.run_logs(run_id, after=2)] == ["three"]


def test_runs_of_a_worker_that_stopped_heartbeating_crash(store: Store) -> None:
    setup_pool(store)
    alive_run, dead_run, unknown_run = schedule(store), schedule(store), schedule(store)
    store.heartbeat("etl", "alive", 10)
    store.heartbeat("etl", "dead", 0.05)
    store.claim_runs("etl", "alive", limit=1, scheduled_before=NOW + 10)
    store.claim_runs("etl", "dead", limit=1, scheduled_before=NOW + 10)
    store.claim_runs("etl", "ghost", limit=1, scheduled_before=NOW + 10)
    time.sleep(0.2)
    crashed = set(store.crash_orphaned_runs())
    assert crashed == {dead_run, unknown_run}
    dead = store.get_run(dead_run)
    assert dead is not None and dead.state is RunState.CRASHED
    assert dead.state_message == "worker dead stopped heartbeating"
    assert store.get_run(alive_run).state is RunState.PENDING  # type: ignore[union-attr]
    assert [w.name for w in store.workers("etl")] == ["alive", "dead"]

    assert store.crash_orphaned_runs(worker="alive") == [alive_run]


def test_workers_heartbeats_are_recorded_and_removed(store: Store) -> None:
    store.heartbeat("etl", "w1", 10)
    first = store.workers("etl")[0].heartbeat_at
    time.sleep(0.01)
    store.heartbeat("etl", "w1", 10)
    (worker,) = store.workers("etl")
    assert worker.heartbeat_at > first and worker.is_online(time.time())
    assert not worker.is_online(time.time() + 31)
    store.remove_worker("etl", "w1")
    assert store.workers() == []


ACTIVE = [RunState.PENDING, RunState.RUNNING, RunState.CANCELLING]


def _claim_and_finish_concurrently(
    backend: Backend, pools: list[str], runs: int
) -> tuple[Counter[str], list[list[FlowRun]]]:
    """Three workers per pool claim (2 at a time), hold each run a moment, and complete it,
    while a watcher reads the active runs over and over; returns how often each run was
    claimed and every set of active runs the watcher saw."""
    workers = [(p, backend.open()) for p in pools for _ in range(3)]
    watcher = backend.open()
    claimed: Counter[str] = Counter()
    seen: list[list[FlowRun]] = []
    lock = threading.Lock()
    done = threading.Event()

    def work(pool_name: str, store: Store, index: int) -> Any:
        def loop() -> None:
            while sum(claimed.values()) < runs:
                got = store.claim_runs(pool_name, f"w{index}", limit=2, scheduled_before=NOW)
                with lock:
                    claimed.update(run.id for run in got)
                time.sleep(0.003)
                for run in got:
                    store.set_run_state(run.id, RunState.COMPLETED, exit_code=0)

        return loop

    def observe() -> None:
        while not done.is_set():
            seen.append(watcher.list_runs(states=ACTIVE, limit=1000))

    observer = threading.Thread(target=observe)
    observer.start()
    try:
        failures = run_in_threads(*(work(p, s, i) for i, (p, s) in enumerate(workers)))
    finally:
        done.set()
        observer.join()
    assert failures == []
    return claimed, seen


def test_pool_and_queue_limits_hold_while_workers_claim_and_finish_at_once(
    backend: Backend,
) -> None:
    setup = backend.open()
    setup_pool(
        setup, pool_limit=3, small={"priority": 1, "concurrency_limit": 1}, big={"priority": 2}
    )
    for index in range(30):
        schedule(setup, "small" if index % 2 else "big", at=NOW - index)

    claimed, seen = _claim_and_finish_concurrently(backend, ["etl"], 30)

    assert len(claimed) == 30 and max(claimed.values()) == 1
    most = max(len(active) for active in seen)
    assert most <= 3, f"the watcher saw {most} runs active in a pool limited to 3"
    most_small = max(sum(run.queue == "small" for run in active) for active in seen)
    assert most_small <= 1, f"the watcher saw {most_small} active in a queue limited to 1"
    assert any(len(active) == 3 for active in seen), "the limit was reached: this tested it"


def test_a_deployment_limit_holds_across_pools_claimed_at_once(backend: Backend) -> None:
    setup = backend.open()
    put_all(
        setup,
        pool("etl"),
        pool("other"),
        queue("etl", "default", 1),
        queue("other", "default", 1),
        deployment("flow", "dep", concurrency_limit=2),
    )
    for index in range(30):
        setup.create_run(
            NewRun("flow/dep", "flow", "etl" if index % 2 else "other", "default", NOW - index)
        )

    claimed, seen = _claim_and_finish_concurrently(backend, ["etl", "other"], 30)

    assert len(claimed) == 30 and max(claimed.values()) == 1
    most = max(len(active) for active in seen)
    assert most <= 2, f"the watcher saw {most} runs of a deployment limited to 2"
    assert any(len(active) == 2 for active in seen)
