"""The pull steps a deployment gets when its file configures none (pipeline: desired state).

Prefect's `prefect deploy` answers this with the absolute directory of the machine that ran
the command, which exists on no other host. We generate steps that work on a worker anywhere:

- an image built by `build_docker_image` with `dockerfile: auto` holds the code under
  `/opt/prefect/<directory name>`: work there (Prefect's own rule);
- a custom Dockerfile decides itself where the code is: no pull steps, the image's WORKDIR
  is used (Prefect's non-interactive rule);
- a deployment that names an `image` in its job variables but builds none: `/opt/prefect`,
  with a warning (Prefect's non-interactive rule);
- otherwise, clone the repository and work in the file's directory. The clone comes from the
  repository's `origin` URL (credentials removed), or from its path when it has none, which
  only a worker on the same host or a shared disk can read.

The clone step names no commit: the worker checks out the commit the repository was last
applied at (`CLONE_STEP_ID` marks the step). So a run executes exactly the code that was
reconciled, never a commit the reconciler refused, and a commit that changes only code does not
rewrite every deployment of the repository.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.model.specs import StepSpec

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
GIT_CLONE = "prefect.deployments.steps.git_clone"
CLONE_STEP_ID = "clone-repository"
_BUILD_DOCKER_IMAGE = "prefect_docker.deployments.steps.build_docker_image"


@dataclass(frozen=True)
class DefaultPull:
    """The generated steps, and a warning to show with them (or None)."""

    steps: list[dict[str, Any]]
    warning: str | None = None
    hint: str | None = None


UNCOMMITTED_WARNING = (
    "no pull steps: runs will clone the head of the repository's default branch, "
    "since the files planned are uncommitted"
)
"""A plan of uncommitted files (`--worktree`) that would store the default pull steps."""


def default_pull_steps(
    *,
    repository: str,
    commit: str | None,
    base_dir: str,
    build_steps: Sequence[StepSpec],
    job_variables: Mapping[str, Any],
) -> DefaultPull:
    """What a deployment of the file at `base_dir` (repository-relative, "" for the root) runs
    before its flow when it has no pull steps of its own."""
    image_build = next((step for step in build_steps if step.name == _BUILD_DOCKER_IMAGE), None)
    if image_build is not None:
        if image_build.kwargs.get("dockerfile") == "auto":
            name = context_directory_name(repository, base_dir, image_build.kwargs.get("path"))
            return DefaultPull([_work_in(f"/opt/prefect/{name}")])
        return DefaultPull([])
    if job_variables.get("image"):
        return DefaultPull(
            [_work_in("/opt/prefect")],
            "no pull steps: runs will work in /opt/prefect of the image in job_variables",
            "if your flow code is elsewhere in the image, add a `pull` section with "
            f"`{SET_WORKING_DIRECTORY}`",
        )
    clone: dict[str, Any] = {"id": CLONE_STEP_ID, "repository": repository}
    warning = None
    if commit is None:
        warning = UNCOMMITTED_WARNING
    steps: list[dict[str, Any]] = [{GIT_CLONE: clone}]
    if base_dir:
        steps.append(_work_in(f"{{{{ {CLONE_STEP_ID}.directory }}}}/{base_dir}"))
    return DefaultPull(steps, warning, "commit your files first" if warning else None)


def context_directory_name(repository: str, base_dir: str, path: Any) -> str:
    """The name of the directory a build runs in: the file's directory (joined with the
    step's `path`), where the repository's root is named after the repository, as a clone
    of it would be."""
    inside = posixpath.normpath(posixpath.join(base_dir, path if isinstance(path, str) else "."))
    if inside not in ("", ".") and not inside.startswith(".."):
        return posixpath.basename(inside)
    return repository_directory_name(repository)


def repository_directory_name(repository: str) -> str:
    """The directory name a clone of `repository` (a URL or a path) gets."""
    name = repository.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    return name or "repository"


def _work_in(directory: str) -> dict[str, Any]:
    return {SET_WORKING_DIRECTORY: {"directory": directory}}
