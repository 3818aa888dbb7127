"""Job variables read from secret-looking environment variables at plan time: recorded with
the deployment so that workers mask them (reconciler/prefect_rules/sensitive.py)."""

from __future__ import annotations

from typing import Any

from reconciler.model.specs import DeploymentSpec
from reconciler.prefect_rules.sensitive import FIELD, sensitive_paths, sensitive_values


def test_paths_of_values_read_from_secret_looking_variables() -> None:
    written = {
        "env": {
            "CONNECTION": "postgres://app:{{ $DB_PASSWORD }}@db/app",
            "KEY": "{{ $MY_SECRET }}",
            "REGION": "{{ $REGION }}",
            "PLAIN": "text",
        },
        "image": "{{ $REGISTRY_TOKEN }}",
        "volumes": ["/data:/data", "{{ $PRIVATE_DIR }}:/private"],
    }
    assert sensitive_paths(written) == ["env.CONNECTION", "env.KEY", "image", "volumes.1"]


def stored(**spec: Any) -> DeploymentSpec:
    return DeploymentSpec.from_spec(
        {"name": "d", "flow_name": "f", "entrypoint": "flows.py:f", **spec}
    )


def test_the_values_at_the_recorded_paths_of_a_stored_deployment() -> None:
    spec = stored(
        job_variables={"env": {"KEY": "s3cret", "REGION": "eu"}, "volumes": ["a", "/hid"]},
        **{FIELD: ["env.KEY", "env.GONE", "volumes.1", "volumes.7"]},
    )
    assert sensitive_values(spec) == ["s3cret", "/hid"]
    assert sensitive_values(stored(job_variables={"env": {}})) == []
