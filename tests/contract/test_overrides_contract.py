"""Operator overrides (reconciler/engine/overrides.py, store/overrides.py) on every backend:
pausing a git-owned deployment writes it paused and removes its scheduled runs in one
transaction and records the override; resuming restores what it was; the desired state is
laid over."""

from __future__ import annotations

import time

import pytest

from reconciler.core.errors import UserError
from reconciler.engine import overrides
from reconciler.model.resources import Kind
from reconciler.model.runs import NewRun
from reconciler.store import Store
from reconciler.store.overrides import overrides as stored_overrides
from tests.contract.backends import deployment, put_all
from tests.contract.test_runs_contract import setup_pool


def test_pause_and_resume_by_override(store: Store) -> None:
    setup_pool(store)
    nightly = deployment("etl", "nightly")
    put_all(store, nightly)
    store.create_run(
        NewRun(
            deployment="etl/nightly",
            flow_name="etl",
            pool="etl",
            queue="default",
            scheduled_time=time.time() + 3600,
            schedule_id="s1",
            idempotency_key="scheduled etl/nightly s1 1",
        )
    )
    revision = store.revision()

    message = overrides.pause(store, "etl/nightly", "ops")
    assert "paused by an override" in message
    found = store.get(Kind.DEPLOYMENT, "etl/nightly")
    assert found is not None and found.deployment_spec().paused is True
    assert found.owner == nightly.owner and store.revision() == revision + 1
    assert store.list_runs(deployment="etl/nightly") == []
    (override,) = stored_overrides(store)
    assert (override.deployment, override.paused, override.was_paused, override.actor) == (
        "etl/nightly",
        True,
        False,
        "ops",
    )
    assert "already paused" in overrides.pause(store, "etl/nightly", "ops")

    assert "override is removed" in overrides.resume(store, "etl/nightly")
    found = store.get(Kind.DEPLOYMENT, "etl/nightly")
    assert found is not None and found.deployment_spec().paused is False
    assert stored_overrides(store) == []


def test_override_refusals_write_nothing(store: Store) -> None:
    put_all(store, deployment("etl", "nightly"), deployment("etl", "by-hand", owner=None))
    revision = store.revision()
    with pytest.raises(UserError, match="no deployment 'etl/nigthly'") as caught:
        overrides.pause(store, "etl/nigthly", "ops")
    assert caught.value.hint == 'did you mean "etl/nightly"?'
    with pytest.raises(UserError, match="was made by hand"):
        overrides.pause(store, "etl/by-hand", "ops")
    with pytest.raises(UserError, match="has no override"):
        overrides.resume(store, "etl/nightly")
    assert store.revision() == revision and stored_overrides(store) == []
