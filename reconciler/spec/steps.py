"""Step declarations (build, push, pull): the names we know, checked at plan time.

A step is a single-key mapping `{fully.qualified.name: {kwargs, id?, requires?}}`. Planning
never runs or imports a step; it only checks that each step is one we can run (or, for steps
outside our list, that its top-level package is installed) and reports unknown names with a
"did you mean". The step value itself, `StepSpec`, is in reconciler/specs.py.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from reconciler.specs import STEP_RESERVED_KEYS, StepSpec

_CORE = "prefect.deployments.steps"
_DOCKER = "prefect_docker.deployments.steps"

BUILTIN_STEPS: frozenset[str] = frozenset(
    {
        f"{_CORE}.git_clone",
        f"{_CORE}.pull.git_clone",
        f"{_CORE}.set_working_directory",
        f"{_CORE}.pull.set_working_directory",
        f"{_CORE}.run_shell_script",
        f"{_CORE}.utility.run_shell_script",
        f"{_CORE}.pip_install_requirements",
        f"{_CORE}.utility.pip_install_requirements",
        f"{_CORE}.pull_from_remote_storage",
        f"{_CORE}.pull.pull_from_remote_storage",
        f"{_CORE}.pull_with_block",
        f"{_CORE}.pull.pull_with_block",
        f"{_DOCKER}.build_docker_image",
        f"{_DOCKER}.push_docker_image",
    }
)

CLOUD_STORAGE_STEPS: frozenset[str] = frozenset(
    {
        "prefect_aws.deployments.steps.push_to_s3",
        "prefect_aws.deployments.steps.pull_from_s3",
        "prefect_gcp.deployments.steps.push_to_gcs",
        "prefect_gcp.deployments.steps.pull_from_gcs",
        "prefect_azure.deployments.steps.push_to_azure_blob_storage",
        "prefect_azure.deployments.steps.pull_from_azure_blob_storage",
    }
)

LEGACY_NAMES: dict[str, str] = {
    "prefect.projects.steps.git_clone_project": f"{_CORE}.git_clone",
    "prefect.projects.steps.git_clone": f"{_CORE}.git_clone",
    "prefect.deployments.steps.git_clone_project": f"{_CORE}.git_clone",
    "prefect.projects.steps.set_working_directory": f"{_CORE}.set_working_directory",
    "prefect.projects.steps.run_shell_script": f"{_CORE}.run_shell_script",
    "prefect.projects.steps.pip_install_requirements": f"{_CORE}.pip_install_requirements",
    "prefect_docker.projects.steps.build_docker_image": f"{_DOCKER}.build_docker_image",
    "prefect_docker.projects.steps.push_docker_image": f"{_DOCKER}.push_docker_image",
}

RESERVED_KEYS = STEP_RESERVED_KEYS


def step_from_mapping(raw: dict[str, Any]) -> StepSpec:
    """A validated single-key mapping to a StepSpec (the schema checked the shape)."""
    return StepSpec.from_spec(raw)


def step_problem(name: str) -> tuple[str, str | None] | None:
    """Why a step name cannot be used, with a hint; None when it can."""
    if name in BUILTIN_STEPS or name in CLOUD_STORAGE_STEPS:
        return None
    if name in LEGACY_NAMES:
        return (
            f'"{name}" is a Prefect 2 step name that Prefect 3 no longer has',
            f'use "{LEGACY_NAMES[name]}"',
        )
    if "." not in name:
        return (f'"{name}" is not a step: a step is named by its dotted function path', None)
    top = name.split(".", 1)[0]
    if importlib.util.find_spec(top) is not None and not top.startswith("prefect"):
        return None  # a custom step from an installed package: checked when it runs
    from reconciler.spec.validation import did_you_mean

    hint = did_you_mean(name, sorted(BUILTIN_STEPS | CLOUD_STORAGE_STEPS))
    return (
        f'unknown step "{name}"',
        hint or "see docs/prefect-compatibility.md for the steps reconciler runs",
    )
