"""`reconcile import --from prefect+...`, the pure parts: a deployment's Prefect view as our
spec (schedules in our stored form), and the parameter schema compared one way whether
`prefect deploy` or our build wrote it (the server-facing import is tested against a real
`prefect server` in tests/prefect_target/test_import_prefect.py)."""

from __future__ import annotations

from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.onboard.export import export_state
from reconciler.prefect_target.mapping import desired_view, observed_deployment
from reconciler.prefect_target.observe import deployment_spec, schedule_spec

RAW = {
    "id": "d1",
    "name": "nightly",
    "flow_id": "f1",
    "entrypoint": "flows/etl.py:etl",
    "tags": ["etl", "reconciler:owner=https://git.example/org/flows::prefect.yaml"],
    "parameters": {"days": 3},
    "parameter_openapi_schema": {
        "type": "object",
        "title": "Parameters",
        "properties": {"days": {"type": "integer", "default": 1}},
    },
    "schedules": [
        {
            "id": "s1",
            "active": True,
            "parameters": {},
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Lisbon", "day_or": True},
        },
        {
            "id": "s2",
            "active": False,
            "schedule": {
                "interval": 3600.0,
                "anchor_date": "2026-01-01T00:00:00Z",
                "timezone": "UTC",
            },
        },
    ],
    "work_pool_name": "etl",
    "work_queue_name": None,
    "job_variables": {"env": {"LOG_LEVEL": "debug"}},
    "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt"}}],
}


def test_a_deployment_view_becomes_our_spec_with_our_schedules() -> None:
    view = observed_deployment(RAW, "etl")
    assert view.owner == Owner("https://git.example/org/flows", "prefect.yaml")
    spec = deployment_spec(view.spec)
    assert spec["tags"] == ["etl"]
    assert spec["work_queue_name"] == "default"
    assert spec["schedules"][0]["type"] == "cron"
    assert spec["schedules"][0]["timezone"] == "Europe/Lisbon"
    assert spec["schedules"][1]["interval_seconds"] == 3600
    assert spec["schedules"][1]["active"] is False
    assert "concurrency_options" not in spec


def test_schedules_read_back_through_the_view_unchanged() -> None:
    view = observed_deployment(RAW, "etl")
    spec = deployment_spec(view.spec)
    again = desired_view(Resource.of(Kind.DEPLOYMENT, view.key, spec, None), None)
    assert again.spec["schedules"] == view.spec["schedules"]
    assert schedule_spec({"type": "weird"}) == {"type": "weird"}  # kept when not ours


def test_an_empty_definitions_or_required_is_the_same_parameter_schema() -> None:
    ours = {
        **RAW,
        "parameter_openapi_schema": {
            **RAW["parameter_openapi_schema"],  # type: ignore[dict-item]
            "definitions": {},
            "required": [],
        },
    }
    assert observed_deployment(ours, "etl").spec == observed_deployment(RAW, "etl").spec


def test_the_imported_file_has_no_owner_tag_and_says_who_owned_it() -> None:
    view = observed_deployment(RAW, "etl")
    spec = Resource.of(Kind.DEPLOYMENT, view.key, deployment_spec(view.spec), view.owner)
    result = export_state(ObservedState(0, {spec.ident: spec}), "prefect+http://h/api")
    text = result.prefect_files["prefect.yaml"]
    assert "reconciler:owner" not in text
    assert "owned by https://git.example/org/flows (prefect.yaml)" in text
    assert "Europe/Lisbon" in text


def test_a_deployment_made_through_the_api_without_entrypoint_gets_a_note() -> None:
    view = observed_deployment({**RAW, "entrypoint": None, "tags": []}, "etl")
    spec = Resource.of(Kind.DEPLOYMENT, view.key, deployment_spec(view.spec), None)
    result = export_state(ObservedState(0, {spec.ident: spec}), "prefect+http://h/api")
    assert any("has no entrypoint" in note for note in result.notes)
    assert result.entry_files == []
    assert "made by hand" in result.prefect_files["prefect.yaml"]
