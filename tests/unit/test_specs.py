"""Typed specs (reconciler/model/specs.py): what every reader gets from a stored spec, and that the
pull steps' positions ride along without touching the spec's hash, diff or plan."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.core.diagnostics import Location
from reconciler.model.resources import (
    UNKNOWN_VALUE,
    Kind,
    Owner,
    Resource,
    canonical_json,
    content_hash,
)
from reconciler.model.specs import (
    POSITIONS_KEY,
    DeploymentSpec,
    PoolSpec,
    QueueSpec,
    ScheduleSpec,
    SpecError,
    StepSpec,
    with_pull_step_positions,
)

OWNER = Owner("repo", "prefect.yaml")
CLONE = {"prefect.deployments.steps.git_clone": {"repository": "https://x/r.git", "id": "c"}}
SHELL = {"prefect.deployments.steps.run_shell_script": {"script": "false"}}


def deployment(**spec: Any) -> dict[str, Any]:
    return {"name": "nightly", "flow_name": "ingest", "entrypoint": "flows.py:ingest", **spec}


# --- decoding ---------------------------------------------------------------------------------


def test_a_deployment_with_only_its_required_keys_gets_prefects_defaults() -> None:
    spec = DeploymentSpec.from_spec(deployment())
    assert (spec.name, spec.flow_name, spec.entrypoint) == ("nightly", "ingest", "flows.py:ingest")
    assert spec.enforce_parameter_schema is True  # Prefect enforces unless told not to
    assert spec.paused is False and spec.schedules == () and spec.pull_steps == ()
    assert spec.parameters == {} and spec.job_variables == {} and spec.tags == ()
    assert spec.work_pool_name is None and spec.queue == "default"
    assert spec.concurrency_limit is None and spec.collision_strategy is None


def test_a_deployment_decodes_every_field_it_stores() -> None:
    spec = DeploymentSpec.from_spec(
        deployment(
            tags=["a", "b"],
            parameters={"days": 3},
            enforce_parameter_schema=False,
            paused=True,
            concurrency_limit=2,
            concurrency_options={"collision_strategy": "CANCEL_NEW"},
            work_pool_name="etl",
            work_queue_name="fast",
            job_variables={"env": {"A": "1"}},
            pull_steps=[CLONE],
            sensitive_job_variables=["env.A"],
            schedules=[{"type": "cron", "cron": "0 * * * *", "parameters": {"days": 1}}],
        )
    )
    assert spec.tags == ("a", "b") and spec.parameters == {"days": 3}
    assert spec.enforce_parameter_schema is False and spec.paused is True
    assert (spec.concurrency_limit, spec.collision_strategy) == (2, "CANCEL_NEW")
    assert (spec.work_pool_name, spec.queue) == ("etl", "fast")
    assert spec.pull_steps == (StepSpec.from_spec(CLONE),)
    assert spec.pull_steps[0].id == "c" and spec.pull_steps[0].position is None
    assert spec.sensitive_job_variables == ("env.A",)
    (schedule,) = spec.schedules
    assert (schedule.type, schedule.cron, schedule.parameters) == ("cron", "0 * * * *", {"days": 1})
    assert spec.active_schedules() == ()  # paused: no schedule makes runs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"flow_name": "f", "entrypoint": "e"}, 'deployment spec has no "name"'),
        ({"name": "n", "flow_name": "f"}, 'deployment spec has no "entrypoint"'),
        (deployment(tags="a"), 'deployment spec: "tags" is a string, not a list'),
        (deployment(concurrency_limit=True), '"concurrency_limit" is a boolean, not an integer'),
        (deployment(pull_steps=[{"a": {}, "b": {}}]), "a step is a mapping with one key"),
        (deployment(schedules=[{"cron": "* * * * *"}]), 'schedule spec has no "type"'),
    ],
)
def test_a_stored_deployment_without_what_readers_need_is_refused_by_name(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        DeploymentSpec.from_spec(spec)


def test_unknown_keys_are_kept_and_given_back() -> None:
    written = {"pool": "etl", "name": "fast", "priority": 3, "added_later": {"x": 1}}
    queue = QueueSpec.from_spec(written)
    assert queue.extra == {"added_later": {"x": 1}}
    assert queue.to_spec() == {
        **written,
        "description": None,
        "concurrency_limit": None,
        "paused": False,
    }
    assert DeploymentSpec.from_spec(deployment(future=1)).extra == {"future": 1}


def test_pool_and_queue_specs_round_trip_to_the_same_stored_text() -> None:
    pool = {
        "name": "etl",
        "type": "docker",
        "description": "d",
        "paused": True,
        "concurrency_limit": 4,
        "base_job_template": {"variables": {}, "job_configuration": {}},
    }
    queue = {
        "pool": "etl",
        "name": "q",
        "description": None,
        "priority": 2,
        "concurrency_limit": None,
        "paused": False,
    }
    assert canonical_json(PoolSpec.from_spec(pool).to_spec()) == canonical_json(pool)
    assert canonical_json(QueueSpec.from_spec(queue).to_spec()) == canonical_json(queue)


def test_pool_and_queue_defaults() -> None:
    assert PoolSpec.from_spec({"name": "etl"}) == PoolSpec("etl", type="process")
    queue = QueueSpec.from_spec({"pool": "etl", "name": "q"})
    assert (queue.priority, queue.paused, queue.concurrency_limit) == (1, False, None)
    with pytest.raises(SpecError, match='work queue spec has no "pool"'):
        QueueSpec.from_spec({"name": "q"})


def test_a_value_known_only_after_a_build_reads_as_missing() -> None:
    spec = DeploymentSpec.from_spec(
        deployment(version=UNKNOWN_VALUE, description=UNKNOWN_VALUE, tags=UNKNOWN_VALUE)
    )
    assert (spec.version, spec.description, spec.tags) == (None, None, ())


def test_a_schedule_keeps_its_stored_mapping_for_its_identity() -> None:
    raw = {"type": "interval", "interval_seconds": 60, "anchor_date": "2020-01-01T00:00:00+00:00"}
    schedule = ScheduleSpec.from_spec(raw)
    assert schedule.interval_seconds == 60.0 and schedule.active and schedule.timezone is None
    assert schedule.raw == raw


# --- resources and positions ------------------------------------------------------------------


def test_positions_are_stored_but_not_part_of_the_spec_its_hash_or_its_diff() -> None:
    body = deployment(pull_steps=[CLONE, SHELL])
    positions = [Location("repo/prefect.yaml", 4, 5), None]
    stored = Resource.of(Kind.DEPLOYMENT, "ingest/nightly", body, OWNER)
    with_positions = Resource.of(
        Kind.DEPLOYMENT, "ingest/nightly", with_pull_step_positions(body, positions), OWNER
    )
    assert POSITIONS_KEY in json.loads(with_positions.spec_json)  # what the store writes
    assert with_positions.spec_json == canonical_json(with_pull_step_positions(body, positions))
    assert with_positions.hash == stored.hash == content_hash(canonical_json(body))
    assert with_positions.spec == body and dict(with_positions.view()) == body
    steps = with_positions.deployment_spec().pull_steps
    assert [s.position for s in steps] == [Location("repo/prefect.yaml", 4, 5), None]
    assert stored.deployment_spec().pull_steps == steps  # positions do not make steps differ


def test_a_resource_read_back_without_its_hash_hashes_the_spec_alone() -> None:
    body = deployment(pull_steps=[SHELL])
    text = canonical_json(with_pull_step_positions(body, [Location("p.yaml", 9, 3)]))
    assert text.startswith('{"$positions":')
    read_back = Resource(Kind.DEPLOYMENT, "ingest/nightly", text, OWNER)
    assert read_back.hash == Resource.of(Kind.DEPLOYMENT, "ingest/nightly", body, OWNER).hash


def test_no_positions_means_nothing_is_added() -> None:
    body = deployment(pull_steps=[CLONE])
    assert with_pull_step_positions(body, [None]) is body
    assert with_pull_step_positions(body, []) is body


def test_positions_that_do_not_match_the_steps_are_ignored() -> None:
    spec = deployment(pull_steps=[CLONE], **{POSITIONS_KEY: {"pull_steps": [None, None]}})
    assert DeploymentSpec.from_spec(spec).pull_steps[0].position is None


def test_the_typed_spec_is_decoded_once_and_only_for_its_kind() -> None:
    resource = Resource.of(Kind.DEPLOYMENT, "ingest/nightly", deployment(), OWNER)
    assert resource.deployment_spec() is resource.deployment_spec()
    with pytest.raises(TypeError, match="is not a work-pool"):
        resource.pool_spec()
