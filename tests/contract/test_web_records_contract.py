"""The web part of the store contract (WebRecordStore, reconciler/store/web_records.py), for
every backend: the audit log, suspended syncs, runs a page at a time, runs by hour and state,
runs in flight, deployments a page at a time."""

from __future__ import annotations

import time

from reconciler.model.runs import NewRun, RunState
from reconciler.store import Store
from reconciler.store.web_types import RunQuery
from tests.contract.backends import deployment, put_all
from tests.contract.test_runs_contract import setup_pool


def test_audit_log_is_appended_and_read_newest_first(store: Store) -> None:
    revision = store.revision()
    first = store.record_audit("admin token from 10.0.0.1 via api", "run.create", "a/b", {"n": 1})
    second = store.record_audit("admin token from 10.0.0.1 via api", "run.cancel", "r1", {})
    assert second > first
    entries = store.audit_log()
    assert [(e.action, e.target, e.detail) for e in entries] == [
        ("run.cancel", "r1", {}),
        ("run.create", "a/b", {"n": 1}),
    ]
    assert [e.id for e in store.audit_log(before=second)] == [first]
    assert [e.action for e in store.audit_log(target="a/b")] == ["run.create"]
    assert len(store.audit_log(limit=1)) == 1
    assert store.revision() == revision, "the audit log is not desired state"


def test_suspended_syncs(store: Store) -> None:
    assert store.set_sync_suspended("flows", True, "admin") is True
    assert store.set_sync_suspended("flows", True, "admin") is False, "already suspended"
    (held,) = store.suspended_syncs()
    assert (held.name, held.actor) == ("flows", "admin")
    assert store.set_sync_suspended("flows", False, "admin") is True
    assert store.set_sync_suspended("flows", False, "admin") is False
    assert store.suspended_syncs() == []


def test_runs_page_through_with_filters(store: Store) -> None:
    setup_pool(store)
    now = time.time()
    made = [
        store.create_run(NewRun("flow/dep", "flow", "etl", "default", now - i * 60, name=f"r{i}"))
        for i in range(5)
    ]
    store.create_run(NewRun("flow/other", "flow", "etl", "default", now, name="other"))
    store.cancel_run(made[1].id)
    names, after = [], None
    while True:
        page = store.query_runs(RunQuery(deployment="flow/dep", after=after, limit=2))
        names += [r.name for r in page]
        if len(page) < 2:
            break
        after = (page[-1].scheduled_time, page[-1].id)
    assert names == ["r0", "r1", "r2", "r3", "r4"]
    cancelled = store.query_runs(RunQuery(states=(RunState.CANCELLED,)))
    assert [r.name for r in cancelled] == ["r1"]
    window = store.query_runs(
        RunQuery(deployment="flow/dep", scheduled_after=now - 150, scheduled_before=now - 30)
    )
    assert [r.name for r in window] == ["r1", "r2"]


def test_runs_by_hour_and_in_flight(store: Store) -> None:
    setup_pool(store)
    start = (time.time() // 3600 - 2) * 3600
    for offset, count in ((10, 3), (2700, 1), (3600 + 5, 2), (7200 + 1, 1)):
        for _ in range(count):
            store.create_run(NewRun("flow/dep", "flow", "etl", "default", start + offset))
    claimed = store.claim_runs("etl", "w1", limit=2, scheduled_before=start + 3600)
    assert len(claimed) == 2
    store.create_run(NewRun("flow/dep", "flow", "etl", "default", start - 5))  # before
    store.create_run(NewRun("flow/dep", "flow", "etl", "default", start + 3 * 3600))  # after
    buckets = store.run_buckets(start, 3)
    assert buckets.counts == {
        0: {"SCHEDULED": 2, "PENDING": 2},
        1: {"SCHEDULED": 2},
        2: {"SCHEDULED": 1},
    }, "45 minutes into the first hour counts in it (rounded down, not to the nearest)"
    assert store.runs_in_flight() == {"etl": {"w1": 2}}


def test_deployments_page_through_and_search(store: Store) -> None:
    put_all(store, *(deployment("flow", f"dep-{i:02d}") for i in range(5)))
    page = store.deployment_page(after=None, limit=2, search=None)
    assert [r.key for r in page] == ["flow/dep-00", "flow/dep-01"]
    after = store.deployment_page(after="flow/dep-01", limit=10, search=None)
    assert [r.key for r in after] == ["flow/dep-02", "flow/dep-03", "flow/dep-04"]
    assert after[0].owner is not None and after[0].spec["name"] == "dep-02"
    assert [r.key for r in store.deployment_page(after=None, limit=10, search="DEP-03")] == [
        "flow/dep-03"
    ]
    assert store.deployment_page(after=None, limit=10, search="%") == []
