"""Which step names are Prefect's and which are the user's, decided at plan time by exact
names, never by a prefix (reconciler/steps/spec.py, issue 17)."""

from __future__ import annotations

import pytest

from reconciler.steps.builtin import BUILTIN_FUNCTIONS
from reconciler.steps.spec import StepSpec, step_problem

PREFECT_NAMES = [
    "prefect.deployments.steps.git_clone",
    "prefect.deployments.steps.pull.git_clone",
    "prefect.deployments.steps.pull.agit_clone",
    "prefect.deployments.steps.utility.run_shell_script",
    "prefect_docker.deployments.steps.build_docker_image",
    "prefect_aws.deployments.steps.push_to_s3",
]


@pytest.mark.parametrize("name", PREFECT_NAMES)
@pytest.mark.parametrize("section", ["build", "push", "pull"])
def test_the_names_prefect_ships_are_accepted_everywhere(name: str, section: str) -> None:
    assert step_problem(StepSpec(name, {}), section) is None


def test_every_name_run_natively_is_one_prefect_ships() -> None:
    for name in BUILTIN_FUNCTIONS:
        assert step_problem(StepSpec(name, {}), "build") is None, name


@pytest.mark.parametrize(
    ("name", "message", "hint"),
    [
        (
            "prefect.deployments.steps.git_clonee",
            'unknown step "prefect.deployments.steps.git_clonee": Prefect has no such step',
            'did you mean "prefect.deployments.steps.git_clone"?',
        ),
        (
            "prefect.projects.steps.git_clone_project",
            "is a Prefect 2 step name that Prefect 3 no longer has",
            'use "prefect.deployments.steps.git_clone"',
        ),
        ("git_clone", "a step is named by the dotted path of its function", None),
        ("my.class.step", "a step is named by the dotted path of its function", None),
        ("my_steps:run", "a step is named by the dotted path of its function", None),
    ],
)
def test_names_that_are_no_step_are_errors(name: str, message: str, hint: str | None) -> None:
    problem = step_problem(StepSpec(name, {}), "pull")
    assert problem is not None and problem.is_error
    assert message in problem.message
    assert problem.hint == hint or (hint is not None and hint in (problem.hint or ""))


def test_an_installed_package_is_the_users_step_whatever_its_name() -> None:
    # `json` stands for any installed package: nothing decides by a `prefect` prefix.
    assert step_problem(StepSpec("json.dumps", {}), "build") is None


def test_a_missing_package_is_an_error_for_build_and_a_warning_for_pull() -> None:
    step = StepSpec("prefect_acme_absent.steps.get_token", {"id": "get-token"})
    build = step_problem(step, "build")
    assert build is not None and build.is_error
    assert 'its package "prefect_acme_absent" is not installed where reconcile runs' in (
        build.message
    )
    pull = step_problem(step, "pull")
    assert pull is not None and not pull.is_error
    assert "is imported on the worker" in pull.message
    assert "(the worker must have it)" in pull.message


def test_a_missing_build_package_listed_under_requires_is_left_to_the_run() -> None:
    step = StepSpec("acme_absent.steps.go", {"requires": ["acme-absent>=1"]})
    assert step_problem(step, "build") is None
    pull = step_problem(step, "pull")
    assert pull is not None and "the worker installs acme-absent>=1 first" in pull.message
