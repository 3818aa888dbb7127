"""The leases and status part of the store contract (LeaseStore in reconciler/store/base.py),
for every backend: a lease is exclusive until released or expired, its fencing token only
grows, and the daemon's status of each repository is kept outside the revision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from reconciler.core.errors import StaleLeaseError
from reconciler.model.observed import Fence
from reconciler.model.resources import Kind
from reconciler.store import LeaseStore, Store
from tests.contract.backends import (
    SHA,
    Backend,
    pool,
    run_in_threads,
)

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


def test_a_lease_is_exclusive_until_released_or_expired(store: LeaseStore) -> None:
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
