"""A real Prefect flow's `emit_event` reaches the store through our Prefect API's event
stream, and a deployment's trigger reacts to it (and to the flow run's Completed event)."""

from __future__ import annotations

import pytest

from reconciler.scheduling.triggers import Evaluator
from reconciler.store.run_events import list_events
from tests.prefect_api.conftest import Harness

pytestmark = pytest.mark.prefect


def test_an_emitted_event_and_the_completion_trigger_runs(harness: Harness) -> None:
    emitter = harness.deploy("emitter", "pipeline.py:emitter")
    harness.deploy(
        "report",
        "pipeline.py:emitter",
        triggers=[
            {"expect": ["acme.order.placed"], "parameters": {"order": "{{ event.payload.total }}"}},
            {
                "expect": ["prefect.flow-run.Completed"],
                "match_related": {
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": "emitter",
                },
                "parameters": {"order": "{{ event.resource.name }}"},
            },
        ],
    )
    evaluator = Evaluator(harness.store)
    evaluator.tick()
    run = harness.claimed_run(emitter, "emitter", order=21)

    done = harness.run_engine(run.id)
    assert done.returncode == 0, done.output
    harness.settle()

    (emitted,) = list_events(harness.store, event="acme.order.placed")
    assert emitted.event.resource_id == "acme.order.21" and emitted.event.payload["total"] == 42
    evaluator.tick()
    made = harness.store.list_runs(deployment="report/default")
    assert sorted(r.parameters["order"] for r in made) == sorted(["42", run.name])
