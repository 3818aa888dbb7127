"""The worker's backend registry (reconciler/worker/backends/): which backend a pool type gets,
and which pull steps each leaves to where the run executes. What the backends do with a run is
the contract suite's (tests/contract/test_worker_backend_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.errors import UserError
from reconciler.model.specs import StepSpec
from reconciler.worker.backends import backend_for
from reconciler.worker.backends.docker import DockerBackend
from reconciler.worker.backends.process import ProcessBackend

CLONE: dict[str, Any] = {"prefect.deployments.steps.git_clone": {"repository": "file:///r.git"}}
IN_IMAGE: dict[str, Any] = {
    "prefect.deployments.steps.set_working_directory": {"directory": "/opt/code"}
}


def test_each_pool_type_gets_its_backend() -> None:
    assert isinstance(backend_for("process"), ProcessBackend)
    assert isinstance(backend_for("docker"), DockerBackend)


def test_an_unknown_type_names_the_types_there_are() -> None:
    with pytest.raises(UserError) as refused:
        backend_for("ecs")

    assert refused.value.message == (
        "no worker backend here runs pools of type 'ecs' (backends exist for: docker, process)"
    )
    assert refused.value.hint is not None and "work-pools.yaml" in refused.value.hint


def test_a_kubernetes_pool_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(UserError) as refused:
        backend_for("kubernetes", pool="k8s")

    assert refused.value.message == (
        "work pool 'k8s' is of type 'kubernetes', which no worker backend here runs "
        "(backends exist for: docker, process)"
    )
    assert refused.value.hint == (
        "run this pool's flows with Prefect's kubernetes worker (`prefect worker start --pool "
        "NAME --type kubernetes`) against a Prefect server, and apply into that server with "
        "`--store prefect+http://HOST/api` (docs/prefect-target.md); or give the pool type "
        "docker or process in work-pools.yaml"
    )


@pytest.mark.parametrize(
    ("steps", "on_the_worker"),
    [([], True), ([CLONE], True), ([CLONE, IN_IMAGE], True), ([IN_IMAGE], False)],
)
def test_docker_leaves_only_working_directory_steps_to_the_container(
    steps: list[dict[str, Any]], on_the_worker: bool
) -> None:
    typed = [StepSpec.from_spec(step) for step in steps]
    assert DockerBackend().runs_pull_steps(typed) is on_the_worker
    assert ProcessBackend().runs_pull_steps(typed) is True
