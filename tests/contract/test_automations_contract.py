"""Automations of automations.yaml (scheduling/triggers.py, engine/automation_actions.py) on
every backend: run-deployment makes its run in the firing's write, once; the other actions run
after it (pause/resume a deployment by an override, pause a hand-made pool, a notification)."""

from __future__ import annotations

import time
from typing import Any

from reconciler.engine.automation_actions import perform
from reconciler.model.prefect_records import EventRecord
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.model.runs import NewRun, RunState
from reconciler.pools.manual import create_pool, pool_spec
from reconciler.scheduling.triggers import ACTION_RETRY_SECONDS, Evaluator
from reconciler.store import Store
from reconciler.store.overrides import overrides
from tests.contract.backends import deployment, put_all
from tests.contract.test_runs_contract import setup_pool

AUTOMATIONS = Owner("/repo", "automations.yaml")


def automation(name: str, trigger: dict[str, Any], *actions: dict[str, Any]) -> Resource:
    spec = {"name": name, "description": "", "enabled": True, "trigger": trigger}
    return Resource.of(Kind.AUTOMATION, name, {**spec, "actions": list(actions)}, AUTOMATIONS)


ON_CRASH = {
    "expect": ["prefect.flow-run.Crashed"],
    "match_related": {"prefect.resource.role": "deployment", "prefect.resource.name": "nightly"},
}


def _crash_nightly(store: Store) -> str:
    run = store.create_run(NewRun("etl/nightly", "etl", "etl", "default", time.time()))
    store.set_run_state(run.id, RunState.RUNNING)
    store.set_run_state(run.id, RunState.CRASHED, "the node went away")
    return run.id


def test_automation_runs_a_deployment_and_acts_after(store: Store) -> None:
    setup_pool(store)
    put_all(
        store,
        deployment("etl", "nightly"),
        deployment("etl", "cleanup", parameters={"days": 1}),
        automation(
            "on-crash",
            ON_CRASH,
            {
                "type": "run-deployment",
                "deployment": "etl/cleanup",
                "parameters": {"crashed": "{{ event.resource.id }}"},
            },
            {"type": "pause-deployment", "deployment": "etl/nightly"},
            {"type": "send-notification", "subject": "crash", "body": "{{ event.resource.id }}"},
        ),
    )
    sent: list[tuple[str, str, str]] = []

    def act(on: Store, name: str, action: Any, event: EventRecord | None) -> None:
        outcome = perform(on, name, action, event, lambda *m: sent.append(m))
        assert not outcome.startswith(("refused", "failed")), outcome

    evaluator = Evaluator(store, act=act)
    evaluator.tick()
    crashed = _crash_nightly(store)
    evaluator.tick()
    evaluator.tick()
    (cleanup,) = store.list_runs(deployment="etl/cleanup")
    assert cleanup.parameters == {"days": 1, "crashed": f"prefect.flow-run.{crashed}"}
    assert "run by automation on-crash" in (cleanup.history[0].message or "")
    nightly = store.get(Kind.DEPLOYMENT, "etl/nightly")
    assert nightly is not None and nightly.deployment_spec().paused
    assert [o.actor for o in overrides(store)] == ["automation:on-crash"]
    assert sent == [("automation", "crash", f"prefect.flow-run.{crashed}")]


def test_automation_removed_or_disabled_does_nothing(store: Store) -> None:
    setup_pool(store)
    action = {"type": "run-deployment", "deployment": "etl/cleanup"}
    put_all(store, deployment("etl", "nightly"), deployment("etl", "cleanup"))
    put_all(store, automation("on-crash", ON_CRASH, action))
    evaluator = Evaluator(store)
    evaluator.tick()
    _crash_nightly(store)
    evaluator.tick()
    assert len(store.list_runs(deployment="etl/cleanup")) == 1
    off = automation("on-crash", ON_CRASH, action)
    spec = {**off.spec, "enabled": False}
    put_all(store, Resource.of(Kind.AUTOMATION, "on-crash", spec, AUTOMATIONS))
    _crash_nightly(store)
    evaluator.tick()
    with store.transaction() as tx:
        tx.delete(Kind.AUTOMATION, "on-crash")
    _crash_nightly(store)
    evaluator.tick()
    assert len(store.list_runs(deployment="etl/cleanup")) == 1
    assert store.list_resources(Kind.AUTOMATION) == []


def test_pool_actions_touch_hand_made_pools_only(store: Store) -> None:
    setup_pool(store)  # pool "etl" is owned by a file
    edit = create_pool(store.observe(), pool_spec("manual", "process"))
    put_all(store, *edit.puts)
    pause = {"type": "pause-work-pool", "work_pool": "manual"}
    assert "Updated work pool" in perform(store, "a", pause, None, None)
    found = store.get(Kind.WORK_POOL, "manual")
    assert found is not None and found.pool_spec().paused
    owned = perform(store, "a", {"type": "pause-work-pool", "work_pool": "etl"}, None, None)
    assert owned.startswith("refused")
    note = {"type": "send-notification", "body": "x"}
    assert "none runs here" in perform(store, "a", note, None, None)


class _Died(BaseException):
    """An evaluator killed between the firing's write and its actions (not an Exception:
    nothing in the evaluator may catch it, as nothing catches a SIGKILL)."""


def test_actions_of_an_evaluator_that_died_after_its_write_happen_once_later(
    store: Store,
) -> None:
    setup_pool(store)
    put_all(
        store,
        deployment("etl", "nightly"),
        automation(
            "on-crash",
            ON_CRASH,
            {"type": "send-notification", "subject": "crash", "body": "{{ event.resource.id }}"},
        ),
    )
    sent: list[str] = []

    def dies(on: Store, name: str, action: Any, event: EventRecord | None) -> None:
        raise _Died

    def act(on: Store, name: str, action: Any, event: EventRecord | None) -> None:
        outcome = perform(on, name, action, event, lambda *m: sent.append(m[2]))
        assert outcome.startswith("notification sent"), outcome

    first = Evaluator(store, act=dies)
    first.tick()
    crashed = _crash_nightly(store)
    fired_at = time.time()
    try:
        first.tick(fired_at)
    except _Died:
        pass
    else:
        raise AssertionError("the automation did not fire")
    # Another evaluator (a standby daemon taking over) sees the firing's write: the run's
    # event is taken, the actions are in the outbox, claimed by the dead one for a while.
    second = Evaluator(store, act=act)
    second.tick(fired_at + 1)
    assert sent == [], "taken again while its first evaluator may still be acting"
    second.tick(fired_at + ACTION_RETRY_SECONDS + 1)
    assert sent == [f"prefect.flow-run.{crashed}"], "done once, with the firing's event"
    for later in (2, 3, 120):
        second.tick(fired_at + ACTION_RETRY_SECONDS + later)
    assert len(sent) == 1, "and never again"


def test_actions_of_a_live_evaluator_happen_once(store: Store) -> None:
    setup_pool(store)
    put_all(
        store,
        deployment("etl", "nightly"),
        automation("on-crash", ON_CRASH, {"type": "send-notification", "body": "crashed"}),
    )
    sent: list[str] = []

    def act(on: Store, name: str, action: Any, event: EventRecord | None) -> None:
        perform(on, name, action, event, lambda *m: sent.append(m[2]))

    evaluator = Evaluator(store, act=act)
    evaluator.tick()
    _crash_nightly(store)
    now = time.time()
    for later in (0, 1, ACTION_RETRY_SECONDS + 1, 3 * ACTION_RETRY_SECONDS):
        evaluator.tick(now + later)
        Evaluator(store, act=act).tick(now + later)  # a second evaluator, racing
    assert sent == ["crashed"]
