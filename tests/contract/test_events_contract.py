"""Events (store/run_events.py, migrations 7 and 10) on every backend: each state change of a
run is an event in Prefect's shape, written with the change; events are listed by name and
resource with wildcards, and pruned by age."""

from __future__ import annotations

import time

from reconciler.model.prefect_records import EventRecord
from reconciler.model.runs import NewRun, RunState
from reconciler.store import Store
from reconciler.store.run_events import list_events, prune_events, record_event
from tests.contract.backends import deployment, put_all
from tests.contract.test_runs_contract import setup_pool


def _run(store: Store) -> str:
    setup_pool(store)
    put_all(store, deployment("etl", "nightly", tags=["prod", "finance"]))
    new = NewRun("etl/nightly", "etl", "etl", "default", time.time(), idempotency_key="k1")
    return store.create_run(new).id


def test_every_state_change_is_an_event(store: Store) -> None:
    run_id = _run(store)
    assert store.set_run_state(run_id, RunState.RUNNING, "started") is not None
    assert store.set_run_state(run_id, RunState.COMPLETED) is not None
    found = list_events(store, resource=f"prefect.flow-run.{run_id}")
    assert [e.event.event for e in reversed(found)] == [
        "prefect.flow-run.Scheduled",
        "prefect.flow-run.Running",
        "prefect.flow-run.Completed",
    ]
    completed = found[0].event
    assert completed.resource["prefect.state-type"] == "COMPLETED"
    assert completed.payload["intended"] == {"from": "RUNNING", "to": "COMPLETED"}
    roles = {
        (r["prefect.resource.role"], r.get("prefect.resource.name") or r["prefect.resource.id"])
        for r in completed.related
    }
    assert {
        ("flow", "etl"),
        ("deployment", "nightly"),
        ("work-pool", "etl"),
        ("work-queue", "default"),
        ("tag", "prefect.tag.prod"),
        ("tag", "prefect.tag.finance"),
    } <= roles


def test_a_state_change_not_made_writes_no_event(store: Store) -> None:
    run_id = _run(store)
    store.set_run_state(run_id, RunState.COMPLETED)
    before = len(list_events(store))
    assert store.set_run_state(run_id, RunState.RUNNING) is None  # final: refused
    assert len(list_events(store)) == before


def test_events_from_outside_filter_and_prune(store: Store) -> None:
    record_event(
        store,
        EventRecord(
            id="e-1",
            occurred="2026-01-01T00:00:00+00:00",
            event="acme.file.arrived",
            resource={"prefect.resource.id": "acme.bucket.raw_data"},
            related=[],
            payload={"size": 3},
        ),
    )
    record_event(  # the same id again: kept once
        store,
        EventRecord("e-1", "2026-01-01T00:00:00Z", "acme.file.arrived", {}, [], {}),
    )
    (found,) = list_events(store, event="acme.file.*")
    assert found.event.payload == {"size": 3} and found.event.resource_id == "acme.bucket.raw_data"
    assert list_events(store, resource="acme.bucket.raw_*")[0].event.id == "e-1"
    assert list_events(store, resource="acme.bucket.other") == []
    assert list_events(store, event="acme_file*") == []  # `_` is not a wildcard
    assert prune_events(store, "2000-01-01T00:00:00.000+00:00") == 0
    assert prune_events(store, "2999-01-01T00:00:00.000+00:00") == 1
    assert list_events(store) == []
