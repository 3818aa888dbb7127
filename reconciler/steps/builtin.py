"""The steps reconciler runs natively, under both of Prefect's names for each (design notes:
docs/design-notes.md#builtin-steps; `pull.agit_clone`, the async form Prefect also ships, is
`git_clone` too), `set_working_directory`, and the Docker steps
(reconciler/steps/docker.py, docs/design-notes.md#docker-steps).

Steps run during apply, after the plan, never during a dry-run. The Docker steps are listed
here rather than registered from their module with `runner.register`: the runner reads this
list when it is imported, so an import of the runner from the Docker module would be circular.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.steps.context import StepContext, StepError
from reconciler.steps.docker import DOCKER_STEPS
from reconciler.steps.git_clone import git_clone
from reconciler.steps.pip import pip_install_requirements
from reconciler.steps.shell import run_shell_script

_CORE = "prefect.deployments.steps"


def set_working_directory(directory: str, *, context: StepContext) -> dict[str, str]:
    """Make `directory` (relative to the current one) the working directory of later steps."""
    target = context.resolve(directory).resolve()
    if not target.is_dir():
        raise StepError(
            f"cannot change the working directory to {directory!r}: {str(target)!r} is not a "
            "directory",
            hint="check the path; a relative one starts at the previous step's directory",
        )
    context.cwd = target
    return {"directory": str(target)}


BUILTIN_FUNCTIONS: dict[str, Callable[..., Any]] = (
    {
        f"{_CORE}.{alias}{function.__name__}": function
        for function, module in (
            (run_shell_script, "utility"),
            (pip_install_requirements, "utility"),
            (git_clone, "pull"),
            (set_working_directory, "pull"),
        )
        for alias in ("", f"{module}.")
    }
    | {f"{_CORE}.pull.agit_clone": git_clone}
    | DOCKER_STEPS
)
