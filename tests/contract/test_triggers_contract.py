"""Deployment triggers (scheduling/triggers.py) on every backend: B triggered by A's
completion runs once per A run, also with two evaluators racing; parameters come from the
event; a proactive trigger fires when the expected event does not come; compound triggers;
a trigger removed from the deployment stops firing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reconciler.model.prefect_records import EventRecord
from reconciler.model.runs import NewRun, RunState
from reconciler.scheduling.triggers import Evaluator
from reconciler.store import Store
from reconciler.store.run_events import record_event
from tests.contract.backends import Backend, deployment, put_all, run_in_threads
from tests.contract.test_runs_contract import setup_pool

ON_INGEST_COMPLETED: dict[str, Any] = {
    "expect": ["prefect.flow-run.Completed"],
    "match_related": {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "ingest",
    },
    "parameters": {"upstream": "{{ event.resource.id }}", "name": "{{ event.resource.name }}"},
}


def _setup(store: Store, *triggers: dict[str, Any]) -> None:
    setup_pool(store)
    put_all(
        store,
        deployment("etl", "ingest"),
        deployment("etl", "report", triggers=list(triggers), parameters={"days": 1}),
    )


def _complete_ingest(store: Store) -> str:
    run = store.create_run(NewRun("etl/ingest", "etl", "etl", "default", time.time()))
    store.set_run_state(run.id, RunState.RUNNING)
    store.set_run_state(run.id, RunState.COMPLETED)
    return run.id


def _reports(store: Store) -> list[Any]:
    return store.list_runs(deployment="etl/report")


def test_b_runs_once_per_completed_a_with_parameters_from_the_event(store: Store) -> None:
    _setup(store, ON_INGEST_COMPLETED)
    evaluator = Evaluator(store)
    evaluator.tick()
    first = _complete_ingest(store)
    evaluator.tick()
    evaluator.tick()
    (report,) = _reports(store)
    assert report.parameters == {
        "days": 1,
        "upstream": f"prefect.flow-run.{first}",
        "name": store.get_run(first).name,  # type: ignore[union-attr]
    }
    message = report.history[0].message or ""
    assert "prefect.flow-run.Completed" in message and first in message
    second = _complete_ingest(store)
    Evaluator(store).tick()  # a fresh evaluator (a restart) takes up where the last stopped
    evaluator.tick()
    assert sorted(r.parameters["upstream"] for r in _reports(store)) == sorted(
        [f"prefect.flow-run.{first}", f"prefect.flow-run.{second}"]
    )


def test_two_evaluators_racing_fire_once(backend: Backend) -> None:
    store = backend.open()
    _setup(store, ON_INGEST_COMPLETED)
    Evaluator(store).tick()
    runs = [_complete_ingest(store) for _ in range(3)]
    stores = [backend.open() for _ in range(2)]
    evaluators = [Evaluator(s) for s in stores]
    start = threading.Barrier(2)

    def race(evaluator: Evaluator) -> Any:
        def go() -> None:
            start.wait()
            for _ in range(5):
                evaluator.tick()

        return go

    assert run_in_threads(*(race(e) for e in evaluators)) == []
    upstream = sorted(r.parameters["upstream"] for r in _reports(store))
    assert upstream == sorted(f"prefect.flow-run.{r}" for r in runs)
    for opened in [*stores, store]:
        opened.close()


def test_an_event_before_the_trigger_existed_does_not_fire(store: Store) -> None:
    setup_pool(store)
    put_all(store, deployment("etl", "ingest"), deployment("etl", "report"))
    _complete_ingest(store)
    time.sleep(0.01)
    put_all(store, deployment("etl", "report", triggers=[ON_INGEST_COMPLETED]))
    Evaluator(store).tick()
    assert _reports(store) == []


def test_proactive_trigger_fires_when_the_event_does_not_come(store: Store) -> None:
    proactive = {
        "posture": "Proactive",
        "expect": ["acme.heartbeat"],
        "within": 2,
        "parameters": {"why": "{{ event }}"},
    }
    _setup(store, proactive)
    evaluator = Evaluator(store)
    start = time.time()
    evaluator.tick(start)
    evaluator.tick(start + 1.0)
    assert _reports(store) == []
    evaluator.tick(start + 2.1)
    (run,) = _reports(store)
    assert "no expected event came in time" in (run.history[0].message or "")
    # the next window gets its heartbeat: nothing more fires
    record_event(store, EventRecord("hb-1", _iso(start + 2.5), "acme.heartbeat", {}, [], {}))
    evaluator.tick(start + 2.6)
    evaluator.tick(start + 4.3)
    assert len(_reports(store)) == 1
    evaluator.tick(start + 6.5)  # and the one after does not
    assert len(_reports(store)) == 2


def _iso(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _outside(store: Store, name: str, resource: str, at: float | None = None) -> None:
    record_event(
        store,
        EventRecord(
            id=f"{name}-{time.monotonic_ns()}",
            occurred=_iso(at or time.time()),
            event=name,
            resource={"prefect.resource.id": resource},
            related=[],
            payload={},
        ),
    )


def test_compound_trigger_needs_all_of_its_triggers(store: Store) -> None:
    compound = {
        "type": "compound",
        "require": "all",
        "within": 60,
        "triggers": [
            {"expect": ["acme.file.arrived"], "match": {"prefect.resource.id": "acme.file.a*"}},
            {"expect": ["acme.file.arrived"], "match": {"prefect.resource.id": "acme.file.b*"}},
        ],
        "parameters": {"last": "{{ event.resource.id }}"},
    }
    _setup(store, compound)
    evaluator = Evaluator(store)
    evaluator.tick()
    _outside(store, "acme.file.arrived", "acme.file.a1")
    _outside(store, "acme.file.arrived", "acme.file.a2")
    evaluator.tick()
    assert _reports(store) == []
    _outside(store, "acme.file.arrived", "acme.file.b1")
    evaluator.tick()
    (run,) = _reports(store)
    assert run.parameters["last"] == "acme.file.b1"


def test_threshold_within_a_window(store: Store) -> None:
    _setup(store, {"expect": ["acme.ping"], "threshold": 3, "within": 60})
    evaluator = Evaluator(store)
    evaluator.tick()
    for _ in range(2):
        _outside(store, "acme.ping", "acme.x")
    evaluator.tick()
    assert _reports(store) == []
    _outside(store, "acme.ping", "acme.x")
    evaluator.tick()
    assert len(_reports(store)) == 1


def test_for_each_keeps_a_bucket_per_resource(store: Store) -> None:
    _setup(
        store,
        {
            "expect": ["acme.ping"],
            "threshold": 2,
            "within": 60,
            "for_each": ["prefect.resource.id"],
        },
    )
    evaluator = Evaluator(store)
    evaluator.tick()
    for resource in ("acme.x", "acme.y", "acme.x"):
        _outside(store, "acme.ping", resource)
    evaluator.tick()
    assert len(_reports(store)) == 1  # x twice; y once


def test_a_removed_or_disabled_trigger_stops_firing(store: Store) -> None:
    _setup(store, ON_INGEST_COMPLETED)
    evaluator = Evaluator(store)
    evaluator.tick()
    _complete_ingest(store)
    evaluator.tick()
    assert len(_reports(store)) == 1
    put_all(
        store, deployment("etl", "report", triggers=[{**ON_INGEST_COMPLETED, "enabled": False}])
    )
    _complete_ingest(store)
    evaluator.tick()
    put_all(store, deployment("etl", "report"))
    _complete_ingest(store)
    evaluator.tick()
    assert len(_reports(store)) == 1


def test_an_event_long_before_the_next_tick_still_fires(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that comes late (a slow store, a busy machine) still sees what came since the
    last one, however long ago (here: longer than the overlap re-read)."""
    from reconciler.scheduling import triggers

    monkeypatch.setattr(triggers, "OVERLAP_SECONDS", 0.1)
    _setup(store, ON_INGEST_COMPLETED)
    evaluator = Evaluator(store)
    evaluator.tick()
    evaluator.tick()
    _complete_ingest(store)
    time.sleep(0.3)
    evaluator.tick()
    assert len(_reports(store)) == 1
