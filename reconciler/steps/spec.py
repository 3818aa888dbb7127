"""Step declarations (build, push, pull): the names we know, checked at plan time.

A step is a single-key mapping `{fully.qualified.name: {kwargs, id?, requires?}}`. Planning
never runs or imports a step. A name is Prefect's own only when it is one of the exact names
Prefect 3.9 ships (and its documented aliases): those we run natively, or say are not supported
yet; a misspelt name in one of Prefect's step modules is an error with a "did you mean". Any
other well-formed dotted name is the user's own step (docs/prefect-compatibility.md, "What is
imported where"): a build or push step runs where reconcile runs, so its package must be
installed there (or listed under `requires`); a pull step is imported on the worker, so a
package missing here is only a warning.
"""

from __future__ import annotations

import importlib.util
import keyword
from dataclasses import dataclass
from typing import Any

from reconciler.model.specs import STEP_RESERVED_KEYS, StepSpec
from reconciler.prefect_rules.yamlload import Path

_CORE = "prefect.deployments.steps"
_DOCKER = "prefect_docker.deployments.steps"

BUILTIN_STEPS: frozenset[str] = frozenset(
    {
        f"{_CORE}.git_clone",
        f"{_CORE}.pull.git_clone",
        f"{_CORE}.pull.agit_clone",
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

# Prefect's own step modules: a name in one of them that is not listed above exists nowhere.
PREFECT_STEP_MODULES: frozenset[str] = frozenset(
    name.rpartition(".")[0] for name in BUILTIN_STEPS | CLOUD_STORAGE_STEPS | set(LEGACY_NAMES)
)


@dataclass(frozen=True)
class PlacedStep:
    """A step and where it was written (its key path in the file)."""

    step: StepSpec
    path: Path


RESERVED_KEYS = STEP_RESERVED_KEYS


def step_from_mapping(raw: dict[str, Any]) -> StepSpec:
    """A validated single-key mapping to a StepSpec (the schema checked the shape)."""
    return StepSpec.from_spec(raw)


@dataclass(frozen=True)
class StepProblem:
    """Why a step cannot be used as written (`is_error`), or what to know about it."""

    message: str
    hint: str | None
    is_error: bool = True


def is_dotted_name(name: str) -> bool:
    """`package.module.function`: two or more Python identifiers joined by dots."""
    parts = name.split(".")
    return len(parts) >= 2 and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)


def is_prefect_step(name: str) -> bool:
    """One of the exact names under which Prefect (or reconciler for it) provides a step."""
    return name in BUILTIN_STEPS or name in CLOUD_STORAGE_STEPS


def step_problem(step: StepSpec, section: str) -> StepProblem | None:
    """What is wrong with (or worth knowing about) the step `step` of a `section` list
    (`build`, `push` or `pull`); None when nothing is."""
    name = step.name
    if is_prefect_step(name):
        return None
    if not is_dotted_name(name):
        return StepProblem(
            f'"{name}" is not a step: a step is named by the dotted path of its function '
            "(package.module.function)",
            _did_you_mean(name),
        )
    problem = prefect_name_problem(name)
    if problem:
        return problem
    package = name.split(".", 1)[0]
    if importlib.util.find_spec(package) is not None:
        return None  # the user's own step, installed here: imported when it runs
    requires = ", ".join(step.requires)
    if section == "pull":
        then = f"the worker installs {requires} first" if requires else "the worker must have it"
        return StepProblem(
            f'pull step "{name}" is imported on the worker: its package "{package}" is not '
            f"installed where this plan runs ({then})",
            "nothing to do if the worker's Python has it; its outputs are known when the run "
            "starts",
            is_error=False,
        )
    if requires:
        return None  # installed when it runs, with --allow-install
    return StepProblem(
        f'{section} step "{name}" cannot be imported: its package "{package}" is not installed '
        "where reconcile runs, and build and push steps run here",
        _close_prefect_name(name)
        or f'install "{package}" into the Python running reconcile, or list it under '
        "`requires:` and pass --allow-install",
    )


def prefect_name_problem(name: str) -> StepProblem | None:
    """Why a name in one of Prefect's own step modules is none of its steps (a Prefect 2 name,
    or a misspelling); None for any other name."""
    if name in LEGACY_NAMES:
        return StepProblem(
            f'"{name}" is a Prefect 2 step name that Prefect 3 no longer has',
            f'use "{LEGACY_NAMES[name]}"',
        )
    if not is_prefect_step(name) and name.rpartition(".")[0] in PREFECT_STEP_MODULES:
        return StepProblem(
            f'unknown step "{name}": Prefect has no such step',
            _did_you_mean(name)
            or "see docs/prefect-compatibility.md for the steps reconciler runs",
        )
    return None


def _close_prefect_name(name: str) -> str | None:
    """A did-you-mean for a misspelt Prefect package (`prefect_dockr...`), never for a name
    that is merely another package's."""
    import difflib

    choices = sorted(BUILTIN_STEPS | CLOUD_STORAGE_STEPS)
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.9)
    return f'did you mean "{matches[0]}"?' if matches else None


def _did_you_mean(name: str) -> str | None:
    from reconciler.prefect_rules.validation import did_you_mean

    return did_you_mean(name, sorted(BUILTIN_STEPS | CLOUD_STORAGE_STEPS))
