"""The scheduler tick against a real SQLite store, with the clock given: look-ahead, exactly
once, paused and inactive schedules, edits and deletions in git, late runs, and deployment
concurrency at claim time."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable

import pytest

from reconciler.model.resources import Kind
from reconciler.model.runs import RunState
from reconciler.scheduling.scheduler import LatePolicy, LookAhead, tick
from reconciler.store import Store, open_store
from reconciler.worker.create_run import create_run
from tests.conftest import GitRepo
from tests.e2e.helpers import FLOW, POOLS, apply_in_process

# In the future: the apply's own tick (at the real time) makes runs before NOW, and marks none
# of the runs these tests make late.
NOW = datetime.datetime(2031, 6, 1, 12, 0, tzinfo=datetime.UTC).timestamp()


def prefect(*deployments: str) -> str:
    return "deployments:\n" + "".join(deployments)


def deployment(name: str, schedules: str, extra: str = "") -> str:
    return (
        f"  - name: {name}\n    entrypoint: flows/etl.py:ingest\n    work_pool: {{name: etl}}\n"
        f"    parameters: {{days: 1, region: eu}}\n    schedules: {schedules}\n{extra}"
    )


@pytest.fixture
def setup(
    make_repo: Callable[..., GitRepo], store_url: str
) -> Callable[[str], tuple[GitRepo, Store]]:
    opened: list[Store] = []

    def make(prefect_yaml: str) -> tuple[GitRepo, Store]:
        repo = make_repo(
            {"flows/etl.py": FLOW, "work-pools.yaml": POOLS, "prefect.yaml": prefect_yaml}
        )
        apply_in_process(store_url, repo)
        store = open_store(store_url)
        opened.append(store)
        for run in store.list_runs(limit=1000):  # the apply's own tick used the real clock
            store.cancel_run(run.id)
        return repo, store

    yield make  # type: ignore[misc]
    for store in opened:
        store.close()


def waiting(store: Store, deployment: str | None = None) -> list[float]:
    runs = store.list_runs(deployment=deployment, states=[RunState.SCHEDULED], limit=1000)
    return sorted(run.scheduled_time for run in runs if run.scheduled_time >= NOW)


def test_look_ahead_keeps_three_runs_and_an_hour(
    setup: Callable[..., tuple[GitRepo, Store]],
) -> None:
    _, store = setup(
        prefect(
            deployment("daily", '[{cron: "0 9 * * *"}]'),
            deployment("often", '[{cron: "*/10 * * * *"}]'),
        )
    )
    assert tick(store, now=NOW).created == 3 + 6
    daily = waiting(store, "ingest/daily")
    assert len(daily) == 3 and daily[0] == NOW + 21 * 3600  # 09:00 tomorrow
    often = waiting(store, "ingest/often")
    assert len(often) == 6 and often[-1] - NOW == 3600  # 12:10 ... 13:00: one hour ahead
    assert tick(store, now=NOW).created == 0
    assert tick(store, now=NOW + 600).created == 1  # one fired: one more keeps the hour


def test_runs_carry_deployment_and_schedule_parameters(
    setup: Callable[..., tuple[GitRepo, Store]],
) -> None:
    _, store = setup(
        prefect(deployment("d", '[{cron: "0 9 * * *", parameters: {region: us}, slug: us9}]'))
    )
    tick(store, now=NOW)
    run = store.list_runs(states=[RunState.SCHEDULED])[0]
    assert run.parameters == {"days": 1, "region": "us"}
    assert run.schedule_id is not None and run.schedule_id.startswith("us9-")
    assert run.to_json()["auto_scheduled"] is True


def test_the_caps_hold_for_a_fast_interval(setup: Callable[..., tuple[GitRepo, Store]]) -> None:
    _, store = setup(prefect(deployment("fast", "[{interval: 2}]")))
    assert tick(store, now=NOW).created == 100
    assert tick(store, now=NOW, look=LookAhead(max_runs=10)).created == 0
    times = waiting(store)
    assert times[1] - times[0] == 2


def test_a_slow_schedule_is_reported_and_never_holds_up_the_other_deployments(
    setup: Callable[..., tuple[GitRepo, Store]],
) -> None:
    _, store = setup(
        prefect(
            deployment("minutely", '[{rrule: "FREQ=MINUTELY"}]'),
            deployment("walked", '[{rrule: "FREQ=SECONDLY;COUNT=2000000;BYSECOND=0,30"}]'),
            deployment("ended", '[{rrule: "FREQ=SECONDLY;COUNT=2000000"}]'),
            deployment("daily", '[{cron: "0 9 * * *"}]'),
        )
    )
    result = tick(store, now=NOW, budget_seconds=0.2)
    assert len(waiting(store, "ingest/daily")) == 3
    minutely = waiting(store, "ingest/minutely")
    assert len(minutely) == 60 and minutely[0] == NOW + 60  # 12:01 ... 13:00
    assert waiting(store, "ingest/ended") == waiting(store, "ingest/walked") == []
    assert list(result.errors) == ["ingest/walked"]
    assert "0.2 s" in result.errors["ingest/walked"]
    assert "COUNT" in result.errors["ingest/walked"]


def test_paused_deployments_and_inactive_schedules_make_no_runs(
    setup: Callable[..., tuple[GitRepo, Store]],
) -> None:
    _, store = setup(
        prefect(
            deployment("paused", '[{cron: "0 9 * * *"}]', "    paused: true\n"),
            deployment("inactive", '[{cron: "0 9 * * *", active: false}]'),
        )
    )
    assert tick(store, now=NOW).created == 0


def test_two_schedulers_at_once_never_create_a_run_twice(
    setup: Callable[..., tuple[GitRepo, Store]], store_url: str
) -> None:
    _, store = setup(prefect(deployment("d", '[{cron: "*/5 * * * *"}, {interval: 60}]')))
    stores = [open_store(store_url) for _ in range(4)]
    created: list[int] = []
    barrier = threading.Barrier(len(stores))

    def run(index: int) -> None:
        barrier.wait()
        created.append(tick(stores[index], now=NOW).created)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in stores:
        other.close()
    total = len(waiting(store))
    assert sum(created) == total == 12 + 60  # 12:05...13:00 every 5 min; every minute


def test_a_schedule_edited_in_git_replaces_its_waiting_runs_and_keeps_manual_ones(
    setup: Callable[..., tuple[GitRepo, Store]], store_url: str
) -> None:
    repo, store = setup(prefect(deployment("d", '[{cron: "0 9 * * *"}]')))
    tick(store, now=NOW)
    manual = create_run(store, "ingest/d", scheduled_time=NOW + 7200).id
    repo.commit({"prefect.yaml": prefect(deployment("d", '[{cron: "0 10 * * *"}]'))})
    apply_in_process(store_url, repo)
    hours = {
        datetime.datetime.fromtimestamp(t, datetime.UTC).hour
        for t in waiting(store)
        if t != NOW + 7200
    }
    assert 9 not in hours  # the old schedule's runs went with the apply
    assert store.get_run(manual).state is RunState.SCHEDULED  # type: ignore[union-attr]
    tick(store, now=NOW)
    after = {
        datetime.datetime.fromtimestamp(t, datetime.UTC).hour
        for t in waiting(store)
        if t != NOW + 7200
    }
    assert after == {10}


def test_pausing_or_deleting_a_deployment_removes_its_waiting_runs(
    setup: Callable[..., tuple[GitRepo, Store]], store_url: str
) -> None:
    repo, store = setup(
        prefect(deployment("a", '[{cron: "0 9 * * *"}]'), deployment("b", '[{cron: "0 9 * * *"}]'))
    )
    tick(store, now=NOW)
    assert len(waiting(store)) == 6
    repo.commit(
        {"prefect.yaml": prefect(deployment("a", '[{cron: "0 9 * * *"}]', "    paused: true\n"))}
    )
    apply_in_process(store_url, repo, allow_empty=True)
    assert waiting(store) == []
    assert store.get(Kind.DEPLOYMENT, "ingest/b") is None
    assert tick(store, now=NOW).created == 0


def test_late_runs_are_marked_or_skipped(setup: Callable[..., tuple[GitRepo, Store]]) -> None:
    _, store = setup(prefect(deployment("d", "[{interval: 60}]")))
    tick(store, now=NOW)
    later = NOW + 200
    result = tick(store, now=later, late=LatePolicy(after_seconds=15))
    assert result.late == 3  # due at +60, +120, +180: all more than 15 s ago
    late = store.list_runs(states=[RunState.LATE])
    assert len(late) == 3
    claimed = store.claim_runs("etl", "w", limit=10, scheduled_before=later)
    assert {run.id for run in claimed} == {run.id for run in late}  # late runs still run
    skipped = tick(store, now=later + 600, late=LatePolicy(after_seconds=15, skip=True))
    assert skipped.late == 10  # due at +240 ... +780
    cancelled = store.list_runs(states=[RunState.CANCELLED], limit=1000)
    assert len(cancelled) >= 10
    assert {run.state_message for run in cancelled if run.scheduled_time >= NOW} == {
        "skipped: not started within the grace period of its scheduled time"
    }


@pytest.mark.parametrize(
    ("strategy", "second_state"),
    [("ENQUEUE", RunState.SCHEDULED), ("CANCEL_NEW", RunState.CANCELLED)],
)
def test_deployment_concurrency_is_enforced_when_runs_are_claimed(
    setup: Callable[..., tuple[GitRepo, Store]], strategy: str, second_state: RunState
) -> None:
    limit = f"    concurrency_limit: {{limit: 1, collision_strategy: {strategy}}}\n"
    _, store = setup(prefect(deployment("d", "[]", limit)))
    first = create_run(store, "ingest/d", scheduled_time=NOW).id
    second = create_run(store, "ingest/d", scheduled_time=NOW + 1).id
    claimed = store.claim_runs("etl", "w", limit=10, scheduled_before=NOW + 10)
    assert [run.id for run in claimed] == [first]
    assert store.get_run(second).state is second_state  # type: ignore[union-attr]
    store.set_run_state(first, RunState.COMPLETED)
    again = store.claim_runs("etl", "w", limit=10, scheduled_before=NOW + 10)
    assert [run.id for run in again] == ([second] if strategy == "ENQUEUE" else [])
