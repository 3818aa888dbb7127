"""Hand-made pools and queues (reconciler.pools.manual) and pool status (reconciler.pools.status)
on states written as values: Prefect's priority rules, the refusals, and the preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.core.errors import UserError
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.model.specs import PoolSpec
from reconciler.pools import manual
from reconciler.pools.status import pool_status
from reconciler.prefect_rules.job_templates import default_base_job_template

REPO = "/srv/flows"
POOLS = Owner(REPO, "work-pools.yaml")
PREFECT = Owner(REPO, "prefect.yaml")


def state(*resources: Resource) -> ObservedState:
    return ObservedState(revision=1, resources={r.ident: r for r in resources})


def pool(name: str, owner: Owner | None = None, **fields: Any) -> Resource:
    spec = {**manual.pool_spec(name, "process"), **fields}
    return Resource.of(Kind.WORK_POOL, name, spec, owner)


def queue(pool_name: str, name: str, priority: int, owner: Owner | None = None) -> Resource:
    spec = manual.queue_spec(pool_name, name, priority)
    return Resource.of(Kind.WORK_QUEUE, f"{pool_name}/{name}", spec, owner)


def deployment(key: str, pool_name: str, queue_name: str | None = None, **spec: Any) -> Resource:
    flow, name = key.split("/")
    body = {
        "name": name,
        "flow_name": flow,
        "entrypoint": "flows.py:main",
        "work_pool_name": pool_name,
        "work_queue_name": queue_name,
        **spec,
    }
    return Resource.of(Kind.DEPLOYMENT, key, body, PREFECT)


def priorities(edit: manual.Edit) -> dict[str, int]:
    return {r.spec["name"]: r.spec["priority"] for r in edit.puts if r.kind is Kind.WORK_QUEUE}


# --- priorities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "expected"),
    [([], 1), ([1], 2), ([1, 3], 2), ([2, 3], 1), ([1, 2, 3], 4), ([5], 1)],
)
def test_first_free_priority_is_the_first_gap(taken: list[int], expected: int) -> None:
    assert manual.first_free_priority(taken) == expected


@pytest.mark.parametrize(
    ("before", "moved", "target", "after"),
    [
        # a free number: nobody moves
        ({"default": 1, "a": 3}, "new", 2, {"default": 1, "new": 2, "a": 3}),
        # taken: the holder and only those in the way move down by one
        ({"default": 1, "a": 2, "b": 5}, "new", 1, {"new": 1, "default": 2, "a": 3, "b": 5}),
        # an existing queue moving up
        ({"default": 1, "a": 2, "b": 3}, "b", 1, {"b": 1, "default": 2, "a": 3}),
        # an existing queue moving down past others
        ({"default": 1, "a": 2, "b": 3}, "default", 3, {"a": 2, "default": 3, "b": 4}),
        # past the end
        ({"default": 1}, "new", 9, {"default": 1, "new": 9}),
    ],
)
def test_renumbered_moves_only_the_queues_in_the_way(
    before: dict[str, int], moved: str, target: int, after: dict[str, int]
) -> None:
    assert manual.renumbered(before, moved, target) == after


def test_create_queue_takes_the_first_gap_and_moves_nothing() -> None:
    observed = state(pool("etl"), queue("etl", "default", 1), queue("etl", "late", 3))
    edit = manual.create_queue(observed, "etl", "mid")
    assert priorities(edit) == {"mid": 2}
    assert [r.owner for r in edit.puts] == [None]


def test_a_priority_that_would_move_an_owned_queue_is_refused() -> None:
    owned = queue("etl", "implicit", 2, owner=PREFECT)
    observed = state(pool("etl"), queue("etl", "default", 1), owned)
    with pytest.raises(UserError) as caught:
        manual.create_queue(observed, "etl", "new", priority=2)
    assert 'would move work queue "etl/implicit" from priority 2 to 3' in caught.value.message
    assert f"{REPO}:prefect.yaml" in caught.value.message
    assert caught.value.hint == "choose a priority no queue of the pool holds (for example 3)"
    # a free number touches nothing owned: allowed
    assert priorities(manual.create_queue(observed, "etl", "new", priority=3)) == {"new": 3}


# --- refusals ------------------------------------------------------------------------------------


def test_owned_objects_are_refused_with_their_file() -> None:
    owned_pool = pool("etl", owner=POOLS)
    implicit = queue("etl", "q", 2, owner=PREFECT)
    observed = state(owned_pool, implicit)
    with pytest.raises(UserError) as pause:
        manual.update_pool(observed, "etl", {"paused": True}, "pause")
    assert pause.value.message == (
        f'work-pool "etl" belongs to {REPO} (work-pools.yaml); it is managed by git and cannot '
        "be paused by hand"
    )
    assert pause.value.hint is not None
    assert pause.value.hint.startswith(f"change work-pools.yaml in {REPO}, commit")
    with pytest.raises(UserError) as delete:
        manual.delete_queue(observed, implicit)
    assert delete.value.hint is not None
    assert delete.value.hint.startswith(f"remove it from prefect.yaml in {REPO}")
    with pytest.raises(UserError) as change:
        manual.update_queue(observed, implicit, {"priority": 1})
    assert change.value.hint is not None
    assert "declare it under its pool in a work-pools.yaml" in change.value.hint


def test_delete_refuses_what_deployments_use_and_the_default_queue() -> None:
    observed = state(
        pool("etl"),
        queue("etl", "default", 1),
        queue("etl", "fast", 2),
        queue("etl", "idle", 3),
        deployment("ingest/nightly", "etl", "fast"),
        deployment("ingest/hourly", "etl", None),
    )
    with pytest.raises(
        UserError, match=r'used by deployments "ingest/hourly" \(.*\), "ingest/nightly"'
    ):
        manual.delete_pool(observed, "etl")
    with pytest.raises(UserError, match='used by deployment "ingest/nightly"'):
        manual.delete_queue(observed, manual.find_queue(observed, "fast", "etl"))
    with pytest.raises(UserError, match="default queue"):
        manual.delete_queue(observed, manual.find_queue(observed, "etl/default", None))
    edit = manual.delete_queue(observed, manual.find_queue(observed, "idle", None))
    assert edit.deletes == ((Kind.WORK_QUEUE, "etl/idle"),)


def test_find_queue_needs_a_pool_only_when_the_name_is_ambiguous() -> None:
    observed = state(
        pool("a"), pool("b"), queue("a", "default", 1), queue("b", "default", 1), queue("b", "x", 2)
    )
    assert manual.find_queue(observed, "x", None).key == "b/x"
    assert manual.find_queue(observed, "a/default", None).key == "a/default"
    with pytest.raises(UserError, match=r"in several pools \(a, b\)"):
        manual.find_queue(observed, "default", None)
    with pytest.raises(UserError, match='names pool "a" but --pool is "b"'):
        manual.find_queue(observed, "a/default", "b")
    with pytest.raises(UserError) as missing:
        manual.find_queue(observed, "y", "b")
    assert missing.value.message == 'work queue "y" not found in work pool "b"'


def test_a_new_template_must_fit_the_deployments_on_the_pool() -> None:
    docker = pool("box", type="docker", base_job_template=default_base_job_template("docker"))
    observed = state(docker, deployment("ingest/nightly", "box", job_variables={"image": "x:1"}))
    template = default_base_job_template("docker")
    template["variables"]["properties"]["image"] = {"type": "integer"}
    with pytest.raises(UserError) as caught:
        manual.update_pool(observed, "box", {"base_job_template": template})
    assert caught.value.message.startswith(
        'the new base job template does not fit the deployments that use work pool "box": '
        'deployment "ingest/nightly": job_variables.image: '
    )
    # without deployments on it, any valid template goes
    edit = manual.update_pool(state(docker), "box", {"base_job_template": template})
    assert edit.puts[0].spec["base_job_template"] == template


@pytest.mark.parametrize("bad", ["", "  ", "a/b", "x%y", "<p>"])
def test_names_follow_prefect_rules(bad: str) -> None:
    with pytest.raises(UserError):
        manual.check_name("work pool", bad)


# --- preview and status --------------------------------------------------------------------------


def test_preview_fills_defaults_and_job_variables_and_drops_unset_placeholders() -> None:
    spec = manual.pool_spec("box", "docker")
    preview = manual.job_configuration_preview(
        PoolSpec.from_spec(spec),
        {"image": "reg/flows:1", "env": {"TOKEN": "{{ prefect.blocks.secret.t }}"}},
    )
    config = preview["job_configuration"]
    assert config["image"] == "reg/flows:1"
    assert config["env"] == {"TOKEN": "{{ prefect.blocks.secret.t }}"}
    assert config["stream_output"] is True and config["auto_remove"] is False
    assert "networks" not in config  # no default, not set: the worker's own default applies


@dataclass
class FakeWorker:
    last_beat: float

    def is_online(self, now: float) -> bool:
        return now - self.last_beat <= 90


def test_pool_status() -> None:
    paused, running = PoolSpec("box", paused=True), PoolSpec("box")
    assert pool_status(paused, [FakeWorker(100.0)], now=100.0) == "PAUSED"
    assert pool_status(running, [], now=100.0) == "NOT_READY"
    assert pool_status(running, [FakeWorker(0.0)], now=100.0) == "NOT_READY"
    assert pool_status(running, [FakeWorker(0.0), FakeWorker(50.0)], now=100.0) == "READY"
