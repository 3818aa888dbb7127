"""`wait_for_runs` on PostgreSQL wakes a waiting worker as soon as runs of its pool are created
or freed, or its pool is written (LISTEN/NOTIFY). SQLite's, which just waits out the time, is
in tests/unit/test_sqlite_wait.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from reconciler.model.runs import NewRun, RunState
from reconciler.store import Store, open_store
from tests.contract.backends import pool, put_all

NOW = 1_800_000_000.0


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    """A waiting store (already listening) and another that writes."""
    waiter, writer = open_store(postgres_url), open_store(postgres_url)
    put_all(writer, pool("etl"), pool("other"))
    assert waiter.wait_for_runs("etl", 5) is True, "the first call starts listening"
    yield waiter, writer
    waiter.close()
    writer.close()


def timed_wait(waiter: Store, pool_name: str, timeout: float, act: Callable[[], None]) -> float:
    """Wait on `waiter` while `act` runs on another thread 0.1 s in; returns when it woke,
    counted from the act, or raises if it timed out."""
    acted = threading.Event()
    acted_at: list[float] = []

    def later() -> None:
        time.sleep(0.1)
        acted_at.append(time.monotonic())
        act()
        acted.set()

    thread = threading.Thread(target=later)
    thread.start()
    woke = waiter.wait_for_runs(pool_name, timeout)
    woke_at = time.monotonic()
    thread.join()
    assert woke, f"not woken within {timeout} s"
    return woke_at - acted_at[0]


pytestmark = pytest.mark.postgres


def test_a_run_created_wakes_a_waiter_on_its_pool_at_once(pair: tuple[Store, Store]) -> None:
    waiter, writer = pair
    latency = timed_wait(
        waiter, "etl", 10, lambda: writer.create_run(NewRun("f/d", "f", "etl", "q", NOW))
    )
    assert latency < 1.0
    batch = [NewRun("f/d", "f", "etl", "q", NOW + i, idempotency_key=str(i)) for i in range(3)]
    assert timed_wait(waiter, "etl", 10, lambda: writer.create_runs(batch)) < 1.0


def test_a_run_ending_or_its_pool_written_wakes_the_waiter(pair: tuple[Store, Store]) -> None:
    waiter, writer = pair
    run = writer.create_run(NewRun("f/d", "f", "etl", "q", NOW))
    waiter.wait_for_runs("etl", 0.2)  # hears the creation: out of the way
    writer.claim_runs("etl", "w", limit=1, scheduled_before=NOW)
    writer.set_run_state(run.id, RunState.RUNNING)

    assert (
        timed_wait(waiter, "etl", 10, lambda: writer.set_run_state(run.id, RunState.COMPLETED))
        < 1.0
    )
    assert timed_wait(waiter, "etl", 10, lambda: put_all(writer, pool("etl", paused=True))) < 1.0


def test_news_of_another_pool_or_a_rolled_back_write_does_not_wake_it(
    pair: tuple[Store, Store],
) -> None:
    waiter, writer = pair

    def elsewhere() -> None:
        writer.create_run(NewRun("f/d", "f", "other", "q", NOW))
        with pytest.raises(RuntimeError), writer.transaction() as tx:
            tx.put(pool("etl", concurrency_limit=9))
            raise RuntimeError("rolled back: nothing is sent")

    thread = threading.Timer(0.1, elsewhere)
    thread.start()
    started = time.monotonic()
    assert waiter.wait_for_runs("etl", 1.0) is False
    assert time.monotonic() - started >= 0.95
    thread.join()


def test_a_stop_ends_the_wait_early(pair: tuple[Store, Store]) -> None:
    waiter, _ = pair
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert waiter.wait_for_runs("etl", 30, stop) is False
    assert time.monotonic() - started < 2
