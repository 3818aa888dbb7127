"""The pull steps a deployment gets when its file has none: they must work on a worker on
another host, unlike Prefect's absolute directory of the deploying machine."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.model.specs import StepSpec
from reconciler.steps.default_pull import (
    GIT_CLONE,
    SET_WORKING_DIRECTORY,
    context_directory_name,
    default_pull_steps,
    repository_directory_name,
)

COMMIT = "a" * 40
REPO = "https://git.example.com/acme/flows"
BUILD_IMAGE = "prefect_docker.deployments.steps.build_docker_image"


def generated(
    *,
    base_dir: str = "",
    build: list[StepSpec] | None = None,
    job_variables: dict[str, Any] | None = None,
    commit: str | None = COMMIT,
) -> Any:
    return default_pull_steps(
        repository=REPO,
        commit=commit,
        base_dir=base_dir,
        build_steps=build or [],
        job_variables=job_variables or {},
    )


@pytest.mark.parametrize(
    ("repo_id", "name"),
    [
        ("github.com/acme/flows", "flows"),
        ("https://git.example.com/acme/data-platform", "data-platform"),
        ("/srv/repos/etl", "etl"),
        ("/srv/repos/etl.git", "etl"),
        ("git@host:org/proj", "proj"),
        ("host:proj", "proj"),
        ("", "repository"),
    ],
)
def test_a_checkout_is_named_after_its_repository(repo_id: str, name: str) -> None:
    assert repository_directory_name(repo_id) == name


def test_a_file_at_the_root_clones_the_repository_and_names_no_commit() -> None:
    # The worker pins the clone to the commit the repository was last applied at, so the
    # stored steps do not change with every commit.
    result = generated()
    assert result.steps == [{GIT_CLONE: {"id": "clone-repository", "repository": REPO}}]
    assert generated(commit="b" * 40).steps == result.steps
    assert result.warning is None


def test_a_file_in_a_subdirectory_works_in_that_directory_of_the_clone() -> None:
    steps = generated(base_dir="teams/etl").steps
    assert steps[0] == {GIT_CLONE: {"id": "clone-repository", "repository": REPO}}
    assert steps[1] == {
        SET_WORKING_DIRECTORY: {"directory": "{{ clone-repository.directory }}/teams/etl"}
    }


def test_uncommitted_files_clone_the_default_branch_and_say_so() -> None:
    result = generated(commit=None)
    assert result.steps == generated().steps
    assert "uncommitted" in result.warning


def test_an_automatic_dockerfile_image_works_where_it_copied_the_code() -> None:
    auto = StepSpec(BUILD_IMAGE, {"image_name": "x", "dockerfile": "auto"})
    assert generated(build=[auto]).steps == [
        {SET_WORKING_DIRECTORY: {"directory": "/opt/prefect/flows"}}
    ]
    assert generated(base_dir="teams/etl", build=[auto]).steps == [
        {SET_WORKING_DIRECTORY: {"directory": "/opt/prefect/etl"}}
    ]


def test_a_custom_dockerfile_image_gets_no_pull_steps() -> None:
    custom = StepSpec(BUILD_IMAGE, {"image_name": "x", "dockerfile": "Dockerfile"})
    assert generated(build=[custom], job_variables={"image": "x"}).steps == []


def test_a_named_image_without_a_build_works_in_opt_prefect_with_a_warning() -> None:
    result = generated(job_variables={"image": "acme/flows:1"})
    assert result.steps == [{SET_WORKING_DIRECTORY: {"directory": "/opt/prefect"}}]
    assert "/opt/prefect" in result.warning


@pytest.mark.parametrize(
    ("base_dir", "path", "name"),
    [
        ("", None, "flows"),
        ("", ".", "flows"),
        ("a/b", None, "b"),
        ("a/b", "..", "a"),
        ("a", "sub/dir", "dir"),
        ("", "..", "flows"),
    ],
)
def test_the_build_context_directory_name(base_dir: str, path: Any, name: str) -> None:
    assert context_directory_name(REPO, base_dir, path) == name
